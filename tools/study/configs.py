"""Configs of the study's runs: a config file of ``configs/study`` or
``configs/demo`` loaded once, then edited for a run (data, schedule, seed, work
dir). Pipeline steps are found by their ``type``, never by list position."""

import copy
import functools
import os
import os.path as osp
import threading
import time
from typing import Optional

from mmengine.config import Config, ConfigDict

from quadra_mm.comparison.arms import set_u_lr_mult

from .arms import Arm
from .scale import ROOT, STUDY, Scale


def pipeline_step(cfg: Config, loader: str, step_type: str) -> ConfigDict:
    """The one step of type ``step_type`` in ``cfg[loader].dataset.pipeline``.

    Raises:
        KeyError: naming the config, the loader and the types found, when
            the pipeline has none or several steps of that type.
    """
    pipeline = cfg[loader].dataset.pipeline
    steps = [step for step in pipeline if step.type == step_type]
    if len(steps) != 1:
        raise KeyError(
            f'{cfg.filename}: {loader}.dataset.pipeline has '
            f'{len(steps)} steps of type {step_type!r} (expected 1; '
            f'types: {[step.type for step in pipeline]})'
        )
    return steps[0]


def quiet(cfg: Config, work_dir: str) -> None:
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.relpath(work_dir, ROOT).replace(os.sep, '_') + f'_{time.time_ns()}'
    cfg.log_level = 'WARNING'
    cfg.launcher = 'none'
    if 'visualizer' in cfg:
        # mmdet's runtime names its visualizer 'visualizer': a second
        # detector run in this process would log into the first one's dir.
        cfg.visualizer.name = cfg.experiment_name


@functools.lru_cache(maxsize=None)
def _parsed(path: str) -> Config:
    # Without yapf formatting: the Runner formats its config 4-5 times and
    # yapf took ~0.7 s a call here, more than a quick run's training.
    # (Config.fromfile drops its format_python_code for python configs.)
    parsed = Config.fromfile(path)
    return Config(
        parsed.to_dict(), cfg_text=parsed.text, filename=parsed.filename, format_python_code=False
    )


_LOAD_LOCK = threading.Lock()


def load(path: str) -> Config:
    """A fresh copy of the config file ``path`` (each parsed once; mmengine's
    parser is not thread-safe: its base lookup goes through pkg_resources)."""
    with _LOAD_LOCK:
        return copy.deepcopy(_parsed(path))


# --------------------------------------------------------------------------
# classification configs
# --------------------------------------------------------------------------
def set_schedule(
    cfg: Config,
    iters: int,
    val_interval: int,
    warmup: int,
    start_factor: float = 0.1,
    log_interval: Optional[int] = None,
) -> None:
    """Linear warm-up then cosine over ``iters``; one checkpoint at the end; log
    every ``log_interval`` (default ``val_interval``) iterations."""
    warmup = max(1, min(warmup, iters // 2))
    cfg.train_cfg.update(max_iters=iters, val_interval=val_interval)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=start_factor, by_epoch=False, begin=0, end=warmup),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup, end=iters, eta_min=1e-5),
    ]
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.update(
        interval=max(1, min(log_interval or val_interval, iters)), log_metric_by_epoch=False
    )


def set_datasets(
    cfg: Config, data: str, scale: Scale, seed: int, train_part: str, train_per_class: int
) -> None:
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_prefix = data
    cfg.train_dataloader.dataset.update(part=train_part, per_class=train_per_class, seed=seed)
    cfg.train_dataloader.batch_size = scale.batch
    cfg.val_dataloader.dataset.update(per_class=scale.val_per_class, seed=0)
    cfg.test_dataloader.dataset.update(per_class=scale.test_per_class)
    cfg.randomness = dict(seed=seed)


def test_len(scale: Scale) -> int:
    return 5 * (scale.test_per_class or 1000)


def source_cfg(scale: Scale, data: str, seed: int, work: str) -> Config:
    cfg = load(osp.join(STUDY, 'resnet18-cifar_fmnist-source.py'))
    set_datasets(cfg, data, scale, seed, 'source', scale.source_per_class)
    cfg.train_dataloader.batch_size = scale.source_batch
    set_schedule(cfg, scale.source_iters, scale.source_iters, warmup=20)
    quiet(cfg, osp.join(work, 'source', f'seed{seed}'))
    return cfg


def target_cfg(
    task: str,
    arm: Arm,
    scale: Scale,
    data: str,
    seed: int,
    lr: float,
    source: str,
    work_dir: str,
    iters: Optional[int] = None,
) -> Config:
    prefix = 'qnv2-' if arm.family == 'qnv2' else ''
    cfg = load(osp.join(STUDY, f'{prefix}resnet18-cifar_fmnist-{task}.py'))
    iters = iters or scale.iters
    set_datasets(cfg, data, scale, seed, 'train', scale.labels_per_class)
    set_schedule(cfg, iters, scale.val_interval, warmup=10)
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.model.backbone.init_cfg.checkpoint = source
    if task == 'shift':
        cfg.model.head.init_cfg.checkpoint = source
    arm.configure(cfg, iters)
    quiet(cfg, work_dir)
    return cfg


def epoch_checkpoint(cfg: Config) -> str:
    return osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')


def crops_cfg(
    path: str, shapes: str, scale: Scale, seed: int, epochs: Optional[int], work_dir: str
) -> Config:
    """A demo crop-classifier config on the study's shapes set, ``U`` at the
    common lr (the demo configs train it at 16x; the study measures that
    multiplier as an arm of its own, ``qnv2-u-lr``, and keeps it at 1 in every
    other QNv2 run)."""
    cfg = load(path)
    set_u_lr_mult(cfg, 1.0)
    root = osp.join(shapes, 'crops') + '/'
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = root
        pipeline_step(cfg, loader, 'Resize').scale = (scale.det_crop,) * 2
    cfg.test_dataloader = cfg.val_dataloader
    if epochs is not None:
        cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
        cfg.default_hooks.checkpoint.interval = epochs
    cfg.randomness = dict(seed=seed)
    quiet(cfg, work_dir)
    return cfg


def detector_cfg(
    path: str, shapes: str, scale: Scale, seed: int, backbone_ckpt: str, work_dir: str
) -> Config:
    """A demo detector config on the study's shapes set, reduced schedule:
    warm-up and stage switch at 1/16 of the iterations, as in the demo
    (``U`` at the common lr, as in :func:`crops_cfg`)."""
    cfg = load(path)
    set_u_lr_mult(cfg, 1.0)
    root = shapes + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    size = (scale.det_img, scale.det_img)
    pipeline_step(cfg, 'train_dataloader', 'Resize').scale = size
    # mmengine pauses 2 s at every epoch end of an iteration-based loop.
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    pipeline_step(cfg, 'val_dataloader', 'Resize').scale = size
    cfg.test_dataloader = cfg.val_dataloader
    ann = osp.join(root, 'annotations', 'instances_val.json')
    cfg.val_evaluator.ann_file = ann
    cfg.test_evaluator = cfg.val_evaluator
    iters = scale.det_iters
    warmup = max(1, iters // 16)
    set_schedule(cfg, iters, iters, warmup, start_factor=0.01, log_interval=20)
    # item access: hooks unpacked from a base config's list are plain dicts
    for hook in cfg.custom_hooks:
        if hook['type'] == 'QuadraticStageHook':
            hook['switch_iter'] = warmup
        if hook['type'] == 'QuadraticStatsHook':
            hook['interval'] = iters
    cfg.model.backbone.init_cfg.checkpoint = backbone_ckpt
    cfg.randomness = dict(seed=seed)
    quiet(cfg, work_dir)
    return cfg
