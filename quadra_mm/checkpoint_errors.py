"""One error, naming the file and the likely cause, for a checkpoint that
cannot be read.

``torch.load`` reports a damaged file in terms of its own internals
("PytorchStreamReader failed reading zip archive: failed finding central
directory", "invalid load key, 'h'", "Ran out of input") and never names the
file. :func:`unreadable_checkpoint` turns such an error into a
:class:`CheckpointReadError` that says which file, what it looks like
(truncated zip archive, empty, not a torch checkpoint) or, for a file the
``weights_only`` unpickler refused, which pickled type it refused. Pure
python/torch: :mod:`quadra_mm.compat` uses it before anything mm is
registered.
"""

import os
import pickle
import re
import zipfile
from typing import Optional

__all__ = ['CheckpointReadError', 'unreadable_checkpoint']

# torch.save's zip container and the magic number of its legacy format
# (a pickled 0x1950a86a20f9469cfc6c, protocol 2).
_ZIP_MAGIC = b'PK\x03\x04'
_LEGACY_MAGIC = b'\x80\x02\x8a\x0a'
_REFUSED_GLOBAL = re.compile(r'(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)')


class CheckpointReadError(pickle.UnpicklingError, RuntimeError):
    """A checkpoint file that cannot be loaded.

    Both an ``UnpicklingError`` (what torch raises for a refused pickle) and
    a ``RuntimeError`` (what it raises for a damaged archive), so existing
    handlers of either keep working.

    Attributes:
        path: the file (or URL) that was being loaded.
        cause: the likely cause, in words.
    """

    def __init__(self, path: str, cause: str, detail: str) -> None:
        super().__init__(f'cannot load checkpoint {path}: {cause} (torch.load said: {detail})')
        self.path = path
        self.cause = cause


def _head(path: str, size: int = 8) -> bytes:
    try:
        with open(path, 'rb') as f:
            return f.read(size)
    except OSError:
        return b''


def _cause(path: str, error: BaseException) -> str:
    message = str(error)
    refused = _REFUSED_GLOBAL.search(message)
    if refused:
        return (
            'refused by the weights_only allow-list: it pickles '
            f'{refused.group(1)}, which is not a tensor, a container or '
            'a type mmengine checkpoints are made of. Load it only if you '
            'trust its source, e.g. torch.load(path, weights_only=False)'
        )
    if os.path.isfile(path):
        size = os.path.getsize(path)
        head = _head(path)
        if size == 0:
            return 'the file is empty (a write that never happened or was cut off)'
        if head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(path):
            return (
                f'truncated or damaged zip archive ({size} bytes): a '
                'write or download that was cut off'
            )
        if not head.startswith((_ZIP_MAGIC, _LEGACY_MAGIC)):
            return (
                f'not a torch checkpoint: the file starts with {head!r}, '
                'neither a torch zip archive nor the legacy format'
            )
    if 'refusing' in message or 'Unsupported' in message:
        return (
            'refused by the weights_only allow-list: it holds a pickled '
            'object other than tensors and plain containers'
        )
    return 'a damaged torch checkpoint'


def unreadable_checkpoint(path: str, error: BaseException) -> Optional[CheckpointReadError]:
    """The error to raise instead of ``error``, raised by loading ``path``.

    A :class:`CheckpointReadError` naming ``path`` and the likely cause;
    ``None`` when ``error`` already names the file (a missing file, an
    earlier :class:`CheckpointReadError`) and should propagate as it is.
    """
    if isinstance(error, (CheckpointReadError, FileNotFoundError)):
        return None
    return CheckpointReadError(
        str(path), _cause(str(path), error), str(error).strip() or type(error).__name__
    )
