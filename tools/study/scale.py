"""Where the study's configs live, its tasks, and the sizes of a run."""

import os.path as osp
from dataclasses import dataclass
from typing import Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STUDY = osp.join(ROOT, 'configs', 'study')
DEMO = osp.join(ROOT, 'configs', 'demo')
TASKS = ('heldout', 'shift')


@dataclass(frozen=True)
class SameTaskScale:
    """Sizes of the same-task part: P pretraining steps of the first-order
    network, then E extra steps for every arm, and the quadratic network
    from scratch for P + ``scratch_extras`` x E steps."""

    width: int  # ResNet_CIFAR base width: stages width .. 8 x width
    train_per_class: int  # train images per class, all ten classes
    batch: int
    pretrain_iters: int  # P
    pretrain_val_interval: int
    extra_iters: int  # E
    val_interval: int  # of the arms' E steps
    scratch_extras: int
    scratch_val_interval: int
    lrs: Tuple[float, ...]  # the arms' sweep
    test_per_class: Optional[int]  # None: the whole test file (1000)


@dataclass(frozen=True)
class Scale:
    """Sizes of one study run (``FULL`` or ``QUICK``)."""

    name: str
    source_per_class: int  # source images per class
    source_iters: int
    source_batch: int
    labels_per_class: int  # target train images per class
    val_per_class: int
    test_per_class: Optional[int]  # None: the whole test file (1000)
    iters: int  # target training iterations, every arm
    val_interval: int
    batch: int
    lrs: Tuple[float, ...]
    seeds: Tuple[int, ...]
    extra_seeds: Tuple[int, ...]  # part 3b: for the arms of close pairs
    scratch_factor: int  # efficiency run: iters x this
    det_train: int  # detection: generated train / val images
    det_val: int
    det_img: int
    det_crop: int
    det_cls_epochs: int  # first-order crop classifier
    det_iters: int  # Mask R-CNN iterations
    timing_repeats: int  # rounds of the step-time measurement
    flops_size: int  # ResNet-50 input side for part 3's FLOP ratios
    same_task: SameTaskScale


FULL = Scale(
    'full',
    source_per_class=1000,
    source_iters=300,
    source_batch=64,
    labels_per_class=100,
    val_per_class=100,
    test_per_class=None,
    iters=60,
    val_interval=20,
    batch=32,
    lrs=(2e-3, 8e-3, 3.2e-2, 1.28e-1),
    seeds=(0, 1, 2),
    extra_seeds=(3, 4),
    scratch_factor=3,
    det_train=400,
    det_val=60,
    det_img=128,
    det_crop=48,
    det_cls_epochs=6,
    det_iters=400,
    timing_repeats=5,
    flops_size=224,
    same_task=SameTaskScale(
        width=32,
        train_per_class=3000,
        batch=32,
        pretrain_iters=1000,
        pretrain_val_interval=100,
        extra_iters=50,
        val_interval=10,
        scratch_extras=4,
        scratch_val_interval=25,
        lrs=(6.25e-5, 1.25e-4, 2.5e-4, 1e-3, 4e-3),
        test_per_class=None,
    ),
)
QUICK = Scale(
    'quick',
    source_per_class=20,
    source_iters=4,
    source_batch=10,
    labels_per_class=4,
    val_per_class=4,
    test_per_class=4,
    iters=4,
    val_interval=2,
    batch=10,
    lrs=(1e-3,),
    seeds=(0, 1),
    extra_seeds=(2,),
    scratch_factor=2,
    det_train=6,
    det_val=4,
    det_img=96,
    det_crop=32,
    det_cls_epochs=2,
    det_iters=4,
    timing_repeats=1,
    flops_size=64,
    same_task=SameTaskScale(
        width=32,
        train_per_class=4,
        batch=10,
        pretrain_iters=4,
        pretrain_val_interval=2,
        extra_iters=2,
        val_interval=1,
        scratch_extras=2,
        scratch_val_interval=2,
        lrs=(1e-3,),
        test_per_class=2,
    ),
)
