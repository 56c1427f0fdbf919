"""``FashionMNISTSubset``: the source and target tasks of the adaptation study.

Importing this module registers the dataset in mmpretrain's ``DATASETS``
(configs: ``custom_imports = dict(imports=['quadra_mm',
'quadra_mm.datasets.fashion_mnist'])``); ``import quadra_mm.datasets`` alone
stays free of OpenMMLab imports.
"""

import functools
import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np
from mmpretrain.datasets import FashionMNIST
from mmpretrain.datasets.categories import FASHIONMNIST_CATEGORITES
from mmpretrain.datasets.mnist import read_image_file, read_label_file
from mmpretrain.registry import DATASETS

from .fashion_mnist_files import INSTALL_HINT, missing_files
from .fashion_mnist_shift import apply_shift

__all__ = ['FashionMNISTSubset', 'PARTS']

PARTS = ('source', 'train', 'val', 'test')
# Fixed split of the 6000 training images of each class (independent of the
# run seed): [0, VAL) val, [VAL, SOURCE_START) target train pool,
# [SOURCE_START, 6000) source pool. The shifted task uses the source classes,
# so its images must not be ones the source model was trained on.
VAL_PER_CLASS = 200
SOURCE_START = 3000
_SPLIT_SEED = 20261201


@functools.lru_cache(maxsize=2)
def _read(root: str, test: bool) -> Tuple[np.ndarray, np.ndarray]:
    prefix = 't10k' if test else 'train'
    images = read_image_file(osp.join(root, f'{prefix}-images-idx3-ubyte'))
    labels = read_label_file(osp.join(root, f'{prefix}-labels-idx1-ubyte'))
    return images.numpy(), labels.numpy()


@DATASETS.register_module()
class FashionMNISTSubset(FashionMNIST):
    """Fashion-MNIST restricted to some classes, some images per class, and
    optionally seen through a non-linear input shift.

    ``part`` picks the images: ``'test'`` the official test file (read with
    ``split='test', test_mode=True``, 1000 images per class: mmpretrain's
    ``FashionMNIST`` reads the training file unless ``test_mode`` is set);
    ``'val'``, ``'train'`` and
    ``'source'`` three disjoint parts of the training file, fixed per class
    (the first ``VAL_PER_CLASS`` images of a seeded permutation, then the
    target-train pool up to ``SOURCE_START``, then the source pool).
    ``per_class`` images are drawn from the part with ``seed``; labels are
    renumbered ``0 .. len(class_ids) - 1`` in the order of ``class_ids``.

    Args:
        data_prefix (str): directory of the four un-gzipped idx files.
        part (str): ``'source'``, ``'train'``, ``'val'`` or ``'test'``.
        class_ids (Sequence[int]): original Fashion-MNIST labels to keep.
        per_class (int, optional): images per class (all of the part if None).
        seed (int): draws the ``per_class`` images.
        shift (str, optional): a name of
            :data:`quadra_mm.datasets.fashion_mnist_shift.SHIFTS`.
        **kwargs: other :class:`mmpretrain.datasets.BaseDataset` options
            (``pipeline``, ``data_root``, ...).
    """

    def __init__(
        self,
        data_prefix: str,
        part: str,
        class_ids: Sequence[int],
        per_class: Optional[int] = None,
        seed: int = 0,
        shift: Optional[str] = None,
        **kwargs,
    ) -> None:
        if part not in PARTS:
            raise ValueError(f'FashionMNISTSubset: part must be one of {PARTS}, got {part!r}')
        class_ids = [int(c) for c in class_ids]
        if (
            not class_ids
            or len(set(class_ids)) != len(class_ids)
            or not all(0 <= c < 10 for c in class_ids)
        ):
            raise ValueError(
                f'FashionMNISTSubset: class_ids must be distinct labels in 0..9, got {class_ids}'
            )
        if per_class is not None and per_class < 1:
            raise ValueError(f'FashionMNISTSubset: per_class must be >= 1, got {per_class}')
        self.part, self.class_ids = part, class_ids
        self.per_class, self.seed, self.shift = per_class, seed, shift
        kwargs.setdefault(
            'metainfo', dict(classes=[FASHIONMNIST_CATEGORITES[c] for c in class_ids])
        )
        test = part == 'test'
        super().__init__(
            data_prefix=data_prefix,
            split='test' if test else 'train',
            test_mode=test,
            download=False,
            **kwargs,
        )

    def _part(self, order: np.ndarray) -> np.ndarray:
        if self.part == 'val':
            return order[:VAL_PER_CLASS]
        if self.part == 'train':
            return order[VAL_PER_CLASS:SOURCE_START]
        if self.part == 'source':
            return order[SOURCE_START:]
        return order

    def load_data_list(self) -> list:
        root = self.data_prefix['root']
        missing = missing_files(root)
        if missing:
            raise FileNotFoundError(
                f'FashionMNISTSubset: {missing} not found in data_prefix {root!r}; {INSTALL_HINT}'
            )
        images, labels = _read(osp.abspath(root), self.part == 'test')
        rng = np.random.default_rng(self.seed)
        chosen = []
        for new_label, label in enumerate(self.class_ids):
            order = np.flatnonzero(labels == label)
            if self.part != 'test':
                order = np.random.default_rng(_SPLIT_SEED + label).permutation(order)
            part = self._part(order)
            if self.per_class is not None:
                if self.per_class > len(part):
                    raise ValueError(
                        f'FashionMNISTSubset: per_class={self.per_class} but '
                        f'part {self.part!r} has {len(part)} images of '
                        f'class {label}'
                    )
                part = np.sort(rng.choice(part, self.per_class, replace=False))
            chosen += [(index, new_label) for index in part]
        indices = np.array([index for index, _ in chosen], dtype=np.int64)
        selected = images[indices]
        if self.shift is not None:
            selected = apply_shift(selected, self.shift)
        return [
            dict(img=img, gt_label=np.array(new_label, dtype=np.int64))
            for img, (_, new_label) in zip(selected, chosen)
        ]
