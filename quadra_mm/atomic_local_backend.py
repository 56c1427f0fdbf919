"""Atomic checkpoint writes for mmengine.

mmengine's ``LocalBackend.put`` opens the target with ``'wb'``; a run killed
mid-write leaves a truncated ``epoch_N.pth`` that ``last_checkpoint`` still
points to. :class:`AtomicLocalBackend` writes to a temporary file in the same
directory and renames it into place; :func:`install` makes it mmengine's
backend for local paths.
"""

import os
import uuid
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

__all__ = ['AtomicLocalBackend', 'install']


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose writes replace the target file atomically."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        self._atomic_write(obj, filepath, 'wb')

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self._atomic_write(obj.encode(encoding), filepath, 'wb')

    @staticmethod
    def _atomic_write(data: bytes, filepath: Union[str, Path], mode: str) -> None:
        directory = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        # Not tempfile.mkstemp: its files are mode 0600 whatever the umask,
        # and the rename would carry that mode to the checkpoint. os.open
        # with 0o666 gets the mode (umask, default ACLs) of any new file.
        tmp = os.path.join(directory, f'.{os.path.basename(filepath)}.{uuid.uuid4().hex}.tmp')
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
    """Make :class:`AtomicLocalBackend` the backend of local paths."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
