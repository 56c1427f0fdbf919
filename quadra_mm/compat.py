"""Make OpenMMLab 2.x (mmengine 0.10.7) work on torch 2.14, through mmengine's
own extension points; torch itself is never patched.

* Checkpoint loading. Since torch 2.6 ``torch.load`` defaults to
  ``weights_only=True``, and mmengine 0.10.7 does not pass ``weights_only``:
  the checkpoints its own ``Runner`` writes hold ``HistoryBuffer`` objects and
  numpy scalars/arrays in ``meta['message_hub']`` (and ``getattr`` calls
  that rebuild HistoryBuffer's statistics methods), so ``resume=True`` fails
  with an ``UnpicklingError``. Every loader registered in mmengine's
  :class:`CheckpointLoader` (local files, URLs, ...) is re-registered wrapped in
  :func:`torch.serialization.safe_globals` holding exactly the types an
  mmengine checkpoint is made of. Loading stays ``weights_only``: any other
  pickled object is still refused. The allow-list is active only inside a
  load that goes through mmengine's ``CheckpointLoader`` (``load_from``,
  ``resume``, ``init_cfg=dict(type='Pretrained')``), i.e. for files the user
  pointed mmengine at. A file that cannot be read (truncated, not a
  checkpoint, refused by the allow-list) is one
  :class:`~quadra_mm.checkpoint_errors.CheckpointReadError` naming the file
  and the cause.
* FLOP counting: :mod:`quadra_mm.flops` fixes the ``aten::matmul`` handle of
  mmengine's complexity analysis for broadcast batches.
* Conv-BN fusion: :mod:`quadra_mm.fuse_conv_bn` makes mmcv's
  ``fuse_conv_bn`` fold a BatchNorm into a quadratic conv's branch too (mmcv
  offers no extension point there: its per-pair function is wrapped).
* Atomic checkpoint writes. mmengine's ``LocalBackend.put`` opens the target
  with ``'wb'``; a run killed mid-write leaves a truncated ``epoch_N.pth`` that
  ``last_checkpoint`` still points to. :class:`AtomicLocalBackend` writes to a
  temporary file in the same directory and renames it into place.
"""
import functools
import os
import pickle
import uuid
from pathlib import Path
from typing import Callable, List, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from . import flops, fuse_conv_bn
from .checkpoint_errors import unreadable_checkpoint


def _numpy_pickle_globals() -> List[object]:
    """The numpy callables and classes that pickled arrays/scalars refer to."""
    core = np._core if hasattr(np, '_core') else np.core
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes)
                     if name.endswith('DType')]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray,
            np.dtype, *dtype_classes]


_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: object, name: str) -> Callable:
    """Stands in for ``builtins.getattr`` while unpickling.

    A pickled ``HistoryBuffer`` holds its statistics methods as
    ``getattr(HistoryBuffer, 'mean')``; a general ``getattr`` would let a
    crafted file reach any attribute of any allowed object (e.g. an array's
    ``tofile``), so only those lookups are answered.
    """
    # HistoryBuffer fills `_statistics_methods` with its four built-in
    # statistics only when the first instance is created.
    if owner is HistoryBuffer and (
            name in _HISTORY_BUFFER_STATISTICS
            or name in HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({owner!r}, {name!r}) in a checkpoint: only '
        'HistoryBuffer statistics methods are allowed')


MMENGINE_CHECKPOINT_GLOBALS: List[object] = [
    HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'),
    *_numpy_pickle_globals()
]


def _with_mmengine_globals(loader: Callable) -> Callable:

    @functools.wraps(loader)
    def load(filename: str, map_location=None):
        try:
            with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
                return loader(filename, map_location)
        except Exception as error:
            # torch names neither the file nor the cause of a damaged one.
            named = unreadable_checkpoint(filename, error)
            if named is None:
                raise
            raise named from error

    load.__quadra_mm_safe_globals__ = True
    return load


def install_checkpoint_loaders() -> None:
    """Wrap every registered mmengine checkpoint loader (idempotent)."""
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if not getattr(loader, '__quadra_mm_safe_globals__', False):
            CheckpointLoader.register_scheme(
                prefix, _with_mmengine_globals(loader), force=True)


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose writes replace the target file atomically."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        self._atomic_write(obj, filepath, 'wb')

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        self._atomic_write(obj.encode(encoding), filepath, 'wb')

    @staticmethod
    def _atomic_write(data: bytes, filepath: Union[str, Path],
                      mode: str) -> None:
        directory = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        # Not tempfile.mkstemp: its files are mode 0600 whatever the umask,
        # and the rename would carry that mode to the checkpoint. os.open
        # with 0o666 gets the mode (umask, default ACLs) of any new file.
        tmp = os.path.join(
            directory,
            f'.{os.path.basename(filepath)}.{uuid.uuid4().hex}.tmp')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, mode) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def install() -> None:
    install_checkpoint_loaders()
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    flops.install()
    fuse_conv_bn.install()
