"""Make mmengine 0.10.7 load its checkpoints on torch 2.14 (the torch shims of
quadra-mm), through mmengine's own extension points; torch itself is never
patched.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, and mmengine
0.10.7 does not pass ``weights_only``: the checkpoints its own ``Runner``
writes hold ``HistoryBuffer`` objects and numpy scalars/arrays in
``meta['message_hub']`` (and ``getattr`` calls that rebuild HistoryBuffer's
statistics methods), so ``resume=True`` fails with an ``UnpicklingError``.
Every loader registered in mmengine's :class:`CheckpointLoader` (local files,
URLs, ...) is re-registered wrapped in :func:`torch.serialization.safe_globals`
holding exactly the types an mmengine checkpoint is made of. Loading stays
``weights_only``: any other pickled object is still refused. The allow-list is
active only inside a load that goes through mmengine's ``CheckpointLoader``
(``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')``), i.e. for
files the user pointed mmengine at. A file that cannot be read (truncated, not
a checkpoint, refused by the allow-list) is one
:class:`~quadra_mm.checkpoint_errors.CheckpointReadError` naming the file and
the cause.

What else ``import quadra_mm`` installs into mmengine and mmcv (quadra-mm's
own support, not shims) is listed in :mod:`quadra_mm.mm_extensions`.
"""

import functools
import pickle
from typing import Callable, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint_errors import unreadable_checkpoint


def _numpy_pickle_globals() -> List[object]:
    """The numpy callables and classes that pickled arrays/scalars refer to."""
    core = np._core if hasattr(np, '_core') else np.core
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith('DType')]
    return [
        core.multiarray._reconstruct,
        core.multiarray.scalar,
        np.ndarray,
        np.dtype,
        *dtype_classes,
    ]


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
        name in _HISTORY_BUFFER_STATISTICS or name in HistoryBuffer._statistics_methods
    ):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({owner!r}, {name!r}) in a checkpoint: only '
        'HistoryBuffer statistics methods are allowed'
    )


MMENGINE_CHECKPOINT_GLOBALS: List[object] = [
    HistoryBuffer,
    (_history_buffer_statistic, 'builtins.getattr'),
    *_numpy_pickle_globals(),
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
            CheckpointLoader.register_scheme(prefix, _with_mmengine_globals(loader), force=True)


def install() -> None:
    """Install the torch 2.14 shims (idempotent)."""
    install_checkpoint_loaders()
