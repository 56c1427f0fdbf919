"""The run cache: each run's result is kept next to its work dir, keyed by
the fingerprint of the config it ran (and how it was launched), so that an
interrupted comparison resumes, one more seed reuses the others, and a
changed config (an edited file, another lr) runs again."""

import hashlib
import json
import os
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config

__all__ = ['fingerprint', 'load_cached', 'write_json', 'write_text']

# Per-process names that do not change what a run computes.
_NAMES = ('experiment_name', 'work_dir', 'filename')


def fingerprint(cfg: Config, **launch: Any) -> str:
    """SHA-1 of everything in ``cfg`` but its work dir and run names, and of
    ``launch`` (launcher and process count: they change the result)."""
    content = cfg.to_dict()
    for key in _NAMES:
        content.pop(key, None)
    if isinstance(content.get('visualizer'), dict):
        content['visualizer'].pop('name', None)
    text = json.dumps(dict(config=content, launch=launch), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader never sees half a file;
    an interrupted write leaves the old file or none)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    partial = f'{path}.partial{os.getpid()}'
    with open(partial, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(partial, path)


def write_json(path: str, data: Any) -> None:
    """Write ``data`` to ``path`` as JSON, atomically (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=1))


def load_cached(path: str, key: str) -> Optional[dict]:
    """The result kept at ``path`` for the fingerprint ``key``, if any."""
    if not osp.isfile(path):
        return None
    with open(path) as f:
        saved = json.load(f)
    return saved.get('result') if saved.get('fingerprint') == key else None
