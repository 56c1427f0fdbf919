"""Locate Fashion-MNIST offline and un-gzip it where mmpretrain reads it.

The study's data is the Debian package ``dataset-fashion-mnist`` (the four idx
``.gz`` files in ``/usr/share/datasets/fashion-mnist``). mmpretrain's
``FashionMNIST`` wants them un-gzipped in its ``data_prefix``; with
``download=False`` (or the study's dataset) nothing touches the network.
Pure python: no OpenMMLab imports.
"""

import gzip
import os
import os.path as osp
import shutil
from typing import Dict

__all__ = ['DEBIAN_DIR', 'FILES', 'INSTALL_HINT', 'prepare_fashion_mnist', 'missing_files']

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
# Un-gzipped name -> size in bytes (idx header + payload).
FILES: Dict[str, int] = {
    'train-images-idx3-ubyte': 16 + 60000 * 28 * 28,
    'train-labels-idx1-ubyte': 8 + 60000,
    't10k-images-idx3-ubyte': 16 + 10000 * 28 * 28,
    't10k-labels-idx1-ubyte': 8 + 10000,
}
INSTALL_HINT = (
    'install the Debian package with `sudo apt-get update && sudo '
    'apt-get install -y dataset-fashion-mnist` (tools/bootstrap.sh '
    'does this when run as root), then run `.venv/bin/python '
    'tools/run_study.py --prepare-data`'
)


def missing_files(root: str) -> list:
    """The idx files absent from ``root`` or of the wrong size."""
    return [
        name
        for name, size in FILES.items()
        if not osp.isfile(osp.join(root, name)) or osp.getsize(osp.join(root, name)) != size
    ]


def prepare_fashion_mnist(root: str, source: str = DEBIAN_DIR) -> str:
    """Make ``root`` hold the four un-gzipped idx files; return ``root``.

    Files already in place are kept; the others are un-gzipped from
    ``source`` (``<name>.gz``) through a temporary file and an atomic rename.

    Raises:
        FileNotFoundError: a file is neither in ``root`` nor in ``source``;
            the message names it and says what to run.
    """
    todo = missing_files(root)
    absent = [name for name in todo if not osp.isfile(osp.join(source, name + '.gz'))]
    if absent:
        raise FileNotFoundError(
            f'Fashion-MNIST: {absent} not in {root!r} and no {absent[0]}.gz '
            f'in {source!r}; {INSTALL_HINT}'
        )
    os.makedirs(root, exist_ok=True)
    for name in todo:
        target = osp.join(root, name)
        partial = target + '.partial'
        with gzip.open(osp.join(source, name + '.gz'), 'rb') as src, open(partial, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if osp.getsize(partial) != FILES[name]:
            os.remove(partial)
            raise ValueError(
                f'Fashion-MNIST: {source}/{name}.gz un-gzips to '
                f'an unexpected size (want {FILES[name]} bytes)'
            )
        os.replace(partial, target)
    return root
