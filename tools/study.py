#!/usr/bin/env python
"""The adaptation study: does quadratic adaptation beat first-order adaptation
at the same budget? One command, real data (Fashion-MNIST), >= 3 seeds.

    .venv/bin/python tools/study.py                 # -> docs/study.md, docs/study/*.png
    .venv/bin/python tools/study.py --quick --out /tmp/study   # every arm, tiny subset
    .venv/bin/python tools/study.py --prepare-data  # only locate / un-gzip the data

Every run is an mmengine ``Runner`` built from a config of ``configs/study``
(or ``configs/demo``) with the project's ``quadra_mm.cli.build_runner``, as
``tools/train.py`` / ``tools/test.py`` build theirs, in one of ``--workers``
processes (default: one per CPU core, one torch thread each; every run is
seeded, so its result does not depend on which worker ran it). The protocol
(docs/study.md says it again next to the numbers):

1. Source: a first-order CIFAR-style ResNet-18 is pretrained on 5 classes,
   one source model per seed.
2. Targets: (a) ``heldout``: the 5 other classes; (b) ``shift``: the source
   classes through the non-linear "solarise + swirl" shift. Few labels per
   class, the same images for every arm of a seed.
3. Arms (:data:`ARMS`), equal iterations, batch and data. Each arm runs the
   same lr sweep on seed 0, keeps the lr with the best final val accuracy,
   runs the other seeds at that lr; the test split is scored once per run.
4. Kernels / ranks / placement on ``shift`` (adapters-only recipe, the lr of
   ``qnv2-adapters``), efficiency (QuadraNet from scratch, longer), and the
   demo detector, QNv2 vs a first-order twin with the same extra epochs.
"""
import argparse
import copy
import functools
import hashlib
import json
import math
import multiprocessing
import os
import os.path as osp
import platform
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

import quadra_mm  # noqa: E402,F401  (registers modules, torch 2.14 compat)
import quadra_mm.datasets.fashion_mnist  # noqa: E402,F401  (the dataset)
from quadra_mm.cli import build_runner  # noqa: E402
from quadra_mm.hooks.stage_hook import primary_parameters  # noqa: E402
from quadra_mm.datasets import make_demo_data, prepare_fashion_mnist  # noqa: E402
from quadra_mm.ops import is_adapter_param_name  # noqa: E402
from study_report import write_report  # noqa: E402

STUDY = osp.join(ROOT, 'configs', 'study')
DEMO = osp.join(ROOT, 'configs', 'demo')
TASKS = ('heldout', 'shift')


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
    scratch_factor: int  # efficiency run: iters x this
    det_train: int  # detection: generated train / val images
    det_val: int
    det_img: int
    det_crop: int
    det_cls_epochs: int  # first-order crop classifier
    det_iters: int  # Mask R-CNN iterations
    timing_repeats: int  # rounds of the step-time measurement
    flops_size: int  # ResNet-50 input side for part 3's FLOP ratios


FULL = Scale('full', source_per_class=1000, source_iters=300, source_batch=64,
             labels_per_class=100, val_per_class=100, test_per_class=None,
             iters=60, val_interval=20, batch=32, lrs=(2e-3, 8e-3, 3.2e-2, 1.28e-1),
             seeds=(0, 1, 2), scratch_factor=3, det_train=400, det_val=60,
             det_img=128, det_crop=48, det_cls_epochs=6, det_iters=400,
             timing_repeats=5, flops_size=224)
QUICK = Scale('quick', source_per_class=20, source_iters=4, source_batch=10,
              labels_per_class=4, val_per_class=4, test_per_class=4,
              iters=4, val_interval=2, batch=10, lrs=(1e-3, ), seeds=(0, 1),
              scratch_factor=2, det_train=6, det_val=4, det_img=96,
              det_crop=32, det_cls_epochs=2, det_iters=4, timing_repeats=1,
              flops_size=64)


@dataclass(frozen=True)
class Arm:
    name: str
    family: str  # 'first-order' or 'qnv2': which config file
    pretrained: bool
    describe: str
    configure: Callable[[Config, int], None]


def _switch_at(cfg: Config, switch_iter: int) -> None:
    (hook, ) = [h for h in cfg.custom_hooks if h.type == 'QuadraticStageHook']
    hook.switch_iter = switch_iter


def _linear_probe(cfg: Config, iters: int) -> None:
    cfg.model.backbone.update(frozen_stages=4, norm_eval=True)


def _full(cfg: Config, iters: int) -> None:
    pass


def _adapters_only(cfg: Config, iters: int) -> None:
    _switch_at(cfg, iters)  # stage 2 would start after the last iteration


def _lora(cfg: Config, iters: int) -> None:
    cfg.model.backbone.adapter.kernel = 'linear'
    _adapters_only(cfg, iters)


def _stages(cfg: Config, iters: int) -> None:
    _switch_at(cfg, iters // 2)


def _scratch(cfg: Config, iters: int) -> None:
    if cfg.model.backbone.type == 'QuadraNetV2':
        cfg.model.backbone.init_cfg = None  # the ResNet's own random init
    else:
        cfg.model.backbone.pop('init_cfg')
    cfg.model.head.pop('init_cfg', None)
    cfg.custom_hooks = []


ARMS = (
    Arm('linear-probe', 'first-order', True,
        'pretrained backbone frozen (BN statistics too), head trains', _linear_probe),
    Arm('full-ft', 'first-order', True,
        'first-order fine-tuning of every parameter', _full),
    Arm('lora', 'qnv2', True,
        "first-order low-rank adapter, kernel='linear' (phi = a + b): "
        'U((A+B)(x)), same placement and parameter count as qnv2; '
        'adapters, norms and head train', _lora),
    Arm('qnv2-adapters', 'qnv2', True,
        'QNv2 quadratic adapters (stage 1 only): adapters, norms and head '
        'train, primary terms frozen', _adapters_only),
    Arm('qnv2-stages', 'qnv2', True,
        'QNv2 stage training: stage 1 for the first half, then everything '
        '(primary terms at lr x0.1)', _stages),
    Arm('quadranet-scratch', 'qnv2', False,
        'the same quadratic ResNet from random init, every parameter trains',
        _scratch),
    Arm('first-order-scratch', 'first-order', False,
        'the same first-order ResNet from random init', _scratch),
)
ARM_BY_NAME = {arm.name: arm for arm in ARMS}

# Part 3, on the shifted task: variations of the adapters-only recipe.
ABLATIONS = (
    ('rbf', 'kernel rbf (sigma 1), rank 8, all stages',
     lambda cfg: cfg.model.backbone.adapter.update(kernel='rbf')),
    ('poly', 'kernel poly (degree 2, c 1), rank 8, all stages',
     lambda cfg: cfg.model.backbone.adapter.update(kernel='poly')),
    ('rank-4', 'kernel quadratic, rank 4, all stages',
     lambda cfg: cfg.model.backbone.adapter.update(rank=4)),
    ('rank-16', 'kernel quadratic, rank 16, all stages',
     lambda cfg: cfg.model.backbone.adapter.update(rank=16)),
    ('late-stages', 'kernel quadratic, rank 8, stages 3-4 only',
     lambda cfg: cfg.model.backbone.update(stages=[2, 3])),
    # The two cheaper placements of docs/benchmarks.md (issue 7): a default
    # may change only with their accuracy measured here.
    ('stages-2-4', 'kernel quadratic, rank 8, stages 2-4',
     lambda cfg: cfg.model.backbone.update(stages=[1, 2, 3])),
    ('1x1', 'kernel quadratic, rank 8, 1x1 A/B (not atrous), all stages',
     lambda cfg: cfg.model.backbone.adapter.update(kernel_size=1, dilation=1)),
)
PARTS = ('source', *TASKS, *(name for name, *_ in ABLATIONS), 'efficiency',
         'detection')


class Progress:
    """Counts finished work units and prints an ETA from the measured rate
    (thread-safe: the study's parts report from several threads)."""

    def __init__(self, total_units: float) -> None:
        self.total, self.done = total_units, 0.0
        self.start = time.time()
        self.reused = 0.0
        self.lock = threading.Lock()

    def step(self, units: float, label: str, seconds: float,
             reused: bool = False) -> None:
        with self.lock:
            if reused:  # by an earlier invocation: no time spent now
                self.reused += units
                label += ' (reused)'
            else:
                self.done += units
            elapsed = time.time() - self.start
            rate = elapsed / max(self.done, 1e-9)
            left = max(self.total - self.reused - self.done, 0.0)
            print(f'[{100 * (self.done + self.reused) / self.total:5.1f} %] '
                  f'{label}: {seconds:.1f} s | elapsed {_mmss(elapsed)} | '
                  f'ETA {_mmss(rate * left)}', flush=True)


def _mmss(seconds: float) -> str:
    return f'{int(seconds // 60)}:{int(seconds % 60):02d}'


# --------------------------------------------------------------------------
# running configs in this process
# --------------------------------------------------------------------------
def _read_scalars(log_dir: str) -> List[dict]:
    path = osp.join(log_dir, 'vis_data', 'scalars.json')
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _quiet(cfg: Config, work_dir: str) -> None:
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.relpath(work_dir, ROOT).replace(os.sep, '_') \
        + f'_{time.time_ns()}'
    cfg.log_level = 'WARNING'
    cfg.launcher = 'none'
    if 'visualizer' in cfg:
        # mmdet's runtime names its visualizer 'visualizer': a second
        # detector run in this process would log into the first one's dir.
        cfg.visualizer.name = cfg.experiment_name


def fingerprint(cfg: Config) -> str:
    """A hash of everything in ``cfg`` but the per-process run names."""
    content = cfg.to_dict()
    content.pop('experiment_name', None)
    content.get('visualizer', {}).pop('name', None)
    return hashlib.sha1(json.dumps(content, sort_keys=True,
                                   default=str).encode()).hexdigest()


def _saved(path: str, cfg: Config) -> Optional[dict]:
    """What :func:`cached` kept at ``path`` for ``cfg``, if anything."""
    if osp.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get('config') == fingerprint(cfg):
            return saved
    return None


def cached(path: str, cfg: Config, compute: Callable[[], object]):
    """``compute()``, or what it returned for the same config before.

    Each run's result is kept next to its checkpoint (``path``), keyed by
    :func:`fingerprint`: a study stopped half-way (or split over several
    processes with ``--parts``) continues where it stopped, and a changed
    config is run again."""
    key = fingerprint(cfg)
    saved = _saved(path, cfg)
    if saved is not None:
        return saved['result']
    result = compute()
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.partial', 'w') as f:
        json.dump(dict(config=key, result=result), f)
    os.replace(path + '.partial', path)
    return result


def train(cfg: Config, metric: str) -> dict:
    """Train ``cfg`` (or reuse its earlier result); the final checkpoint,
    the val curve of ``metric`` and the mean train-step time."""
    return cached(_run_path(cfg), cfg, lambda: _train(cfg, metric))


def _run_path(cfg: Config) -> str:
    return osp.join(cfg.work_dir, 'study_run.json')


def _train(cfg: Config, metric: str) -> dict:
    start = time.time()
    runner = build_runner(cfg)
    runner.train()
    seconds = time.time() - start
    model = runner.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    adapter = sum(p.numel() for name, p in model.named_parameters()
                  if is_adapter_param_name(name))
    records = _read_scalars(runner.log_dir)
    curve = [(r['step'], r[metric]) for r in records if metric in r]
    times = [r['time'] for r in records if 'loss' in r and 'time' in r]
    iters = cfg.train_cfg.get('max_iters')
    ckpt = osp.join(cfg.work_dir, f'iter_{iters}.pth') if iters else None
    result = dict(curve=curve, final=curve[-1][1] if curve else math.nan,
                  seconds=round(seconds, 1),
                  step_time=sum(times) / len(times) if times else math.nan,
                  trainable=trainable, adapter_params=adapter,
                  records=[r for r in records if any(k.startswith('coco/')
                                                     for k in r)],
                  checkpoint=ckpt, work_dir=cfg.work_dir)
    del runner, model
    return result


def test(cfg: Config, checkpoint: str, expected_len: int) -> float:
    """Top-1 of ``checkpoint`` on the test split of ``cfg``, after checking
    that split's size (mmpretrain's FashionMNIST quirk, SPEC section 4)."""
    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    _quiet(cfg, osp.join(cfg.work_dir, 'test'))
    return cached(osp.join(cfg.work_dir, 'study_test.json'), cfg,
                  lambda: _test(cfg, expected_len))


def _test(cfg: Config, expected_len: int) -> float:
    runner = build_runner(cfg)
    size = len(runner.test_dataloader.dataset)
    if size != expected_len:
        raise RuntimeError(f'test split of {cfg.filename} has {size} images, '
                           f'expected {expected_len}')
    metrics = runner.test()
    del runner
    return float(metrics['accuracy/top1'])


@functools.lru_cache(maxsize=None)
def _parsed(path: str) -> Config:
    # Without yapf formatting: the Runner formats its config 4-5 times and
    # yapf took ~0.7 s a call here, more than a quick run's training.
    # (Config.fromfile drops its format_python_code for python configs.)
    parsed = Config.fromfile(path)
    return Config(parsed.to_dict(), cfg_text=parsed.text,
                  filename=parsed.filename, format_python_code=False)


_LOAD_LOCK = threading.Lock()


def load(path: str) -> Config:
    """A fresh copy of the config file ``path`` (each parsed once; mmengine's
    parser is not thread-safe: its base lookup goes through pkg_resources)."""
    with _LOAD_LOCK:
        return copy.deepcopy(_parsed(path))


# --------------------------------------------------------------------------
# classification configs
# --------------------------------------------------------------------------
def _schedule(cfg: Config, iters: int, val_interval: int, warmup: int,
              start_factor: float = 0.1, log_interval: Optional[int] = None) -> None:
    """Linear warm-up then cosine over ``iters``; one checkpoint at the end; log
    every ``log_interval`` (default ``val_interval``) iterations."""
    warmup = max(1, min(warmup, iters // 2))
    cfg.train_cfg.update(max_iters=iters, val_interval=val_interval)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=start_factor, by_epoch=False, begin=0,
             end=warmup),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup,
             end=iters, eta_min=1e-5),
    ]
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.update(
        interval=max(1, min(log_interval or val_interval, iters)),
        log_metric_by_epoch=False)


def _datasets(cfg: Config, data: str, scale: Scale, seed: int,
              train_part: str, train_per_class: int) -> None:
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_prefix = data
    cfg.train_dataloader.dataset.update(
        part=train_part, per_class=train_per_class, seed=seed)
    cfg.train_dataloader.batch_size = scale.batch
    cfg.val_dataloader.dataset.update(per_class=scale.val_per_class, seed=0)
    cfg.test_dataloader.dataset.update(per_class=scale.test_per_class)
    cfg.randomness = dict(seed=seed)


def test_len(scale: Scale) -> int:
    return 5 * (scale.test_per_class or 1000)


def source_cfg(scale: Scale, data: str, seed: int, work: str) -> Config:
    cfg = load(osp.join(STUDY, 'resnet18-cifar_fmnist-source.py'))
    _datasets(cfg, data, scale, seed, 'source', scale.source_per_class)
    cfg.train_dataloader.batch_size = scale.source_batch
    _schedule(cfg, scale.source_iters, scale.source_iters, warmup=20)
    _quiet(cfg, osp.join(work, 'source', f'seed{seed}'))
    return cfg


def target_cfg(task: str, arm: Arm, scale: Scale, data: str, seed: int,
               lr: float, source: str, work_dir: str,
               iters: Optional[int] = None) -> Config:
    prefix = 'qnv2-' if arm.family == 'qnv2' else ''
    cfg = load(osp.join(STUDY, f'{prefix}resnet18-cifar_fmnist-{task}.py'))
    iters = iters or scale.iters
    _datasets(cfg, data, scale, seed, 'train', scale.labels_per_class)
    _schedule(cfg, iters, scale.val_interval, warmup=10)
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.model.backbone.init_cfg.checkpoint = source
    if task == 'shift':
        cfg.model.head.init_cfg.checkpoint = source
    arm.configure(cfg, iters)
    _quiet(cfg, work_dir)
    return cfg


def step_time_ratios(scale: Scale, data: str, source: str,
                     steps: int = 3) -> Dict[str, float]:
    """Train-step time of each arm and part-3 variant on task (b) over that
    of full first-order fine-tuning: forward, cross-entropy, backward and
    AdamW on the parameters the arm trains, batch ``scale.batch``, models
    measured in turn in this process (the same machine load), median of
    ``scale.timing_repeats`` rounds of ``steps`` steps each."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    variants: Dict[str, Tuple[str, Callable[[Config], None], bool]] = {
        'full-ft': ('full-ft', _full, False),
        'linear-probe': ('linear-probe', _linear_probe, False),
        'lora': ('lora', _lora, True),
        'qnv2-adapters': ('qnv2-adapters', _adapters_only, True),
        'qnv2 stage 2 (everything trains)': ('qnv2-stages', _stages, False),
    }
    for name, _, change in ABLATIONS:
        variants[name] = ('qnv2-adapters', lambda cfg, iters, change=change: (
            _adapters_only(cfg, iters), change(cfg)), True)
    models = {}
    for label, (arm, configure, stage1) in variants.items():
        cfg = target_cfg('shift', ARM_BY_NAME[arm], scale, data, 0, 1e-3,
                         source, osp.join(ROOT, 'work_dirs', 'unused'))
        configure(cfg, scale.iters)
        model = MODELS.build(cfg.model)
        model.train()
        if stage1:  # stage 1: the primary terms are frozen
            for param in primary_parameters(model, 'backbone').values():
                param.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        models[label] = (model, torch.optim.AdamW(params, lr=1e-3))
    inputs = torch.randn(scale.batch, 1, 28, 28)
    labels = torch.randint(0, 5, (scale.batch, ))
    times: Dict[str, List[float]] = {label: [] for label in models}
    for _ in range(scale.timing_repeats + 1):  # the first round warms up
        for label, (model, optimizer) in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = torch.nn.functional.cross_entropy(
                    model(inputs, mode='tensor'), labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            times[label].append(time.perf_counter() - start)
    median = {label: sorted(t[1:])[len(t[1:]) // 2] for label, t in times.items()}
    return {label: median[label] / median['full-ft'] for label in median}


def resnet50_flop_ratios(image_size: int) -> Dict[str, float]:
    """Forward FLOPs of mmpretrain's ResNet-50 (``image_size``², one image)
    with the adapters of the LoRA arm, the default and each part-3 variant,
    over the plain ResNet-50: the cost side of part 3 at the size the paper's
    users run, counted with mmengine's analysis as mmdet's ``get_flops.py``
    counts (``quadra_mm.flops`` makes it count the branch)."""
    from benchmark_adapters import forward_flops
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    plain = dict(type='ResNet', depth=50)
    adapted = dict(type='QuadraNetV2', backbone=plain, targets='resnet',
                   adapter=dict(rank=8, kernel_size=3, dilation=2,
                                kernel='quadratic'))
    variants: Dict[str, Callable[[Config], None]] = {
        'lora': lambda cfg: cfg.model.backbone.adapter.update(kernel='linear'),
        'qnv2-adapters': lambda cfg: None,
        **{name: change for name, _, change in ABLATIONS}}
    image = torch.randn(1, 3, image_size, image_size)

    def flops(backbone: dict) -> int:
        return forward_flops(MODELS.build(backbone), image)

    base = flops(plain)
    ratios = {}
    for name, change in variants.items():
        cfg = Config(dict(model=dict(backbone=copy.deepcopy(adapted))))
        change(cfg)
        ratios[name] = flops(cfg.model.backbone.to_dict()) / base
    return ratios


# --------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------
def _concurrently(fn: Callable, items) -> list:
    """``[fn(item) for item in items]``, each call in its own thread: the
    calls only wait on worker processes, and no thread ever waits for a
    free thread (no pool to exhaust)."""
    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(len(items)) as threads:
        return list(threads.map(fn, items))


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


class Study:
    """The study's parts, each run from a thread of this process that hands
    its trainings and tests to a pool of ``workers`` processes: independent
    runs (lr sweeps, seeds, arms, the detection chain) overlap, dependent
    ones (the seeds after their arm's sweep, part 3 after the lr it reuses)
    wait for what they need."""

    def __init__(self, scale: Scale, work: str, data: str,
                 parts: Sequence[str] = PARTS, workers: int = 1,
                 threads: int = 1) -> None:
        self.scale, self.work, self.data = scale, work, data
        self.workers, self.threads = workers, threads
        self.pool: Optional[ProcessPoolExecutor] = None
        s = scale
        seeds = len(s.seeds)
        # a test pass: forward only, about a third of a training image
        self.test_units = 5 * (s.test_per_class or 1000) / (3 * s.batch)
        run = s.iters + self.test_units
        units = seeds * (2 * s.source_iters + self.test_units)
        units += sum(t in parts for t in TASKS) * len(ARMS) * (
            len(s.lrs) * s.iters + (seeds - 1) * s.iters + seeds * self.test_units)
        units += sum(name in parts for name, *_ in ABLATIONS) * seeds * run
        units += ('efficiency' in parts) * seeds * s.iters * s.scratch_factor
        # detection: per seed 2 classifiers + 2 detectors; a detector
        # iteration costs about 6 classification iterations here.
        units += ('detection' in parts) * seeds * (
            2 * s.det_cls_epochs * 10 + 2 * 6 * s.det_iters)
        self.progress = Progress(units)
        self.results: dict = dict(scale=asdict(scale), tasks={}, ablation={},
                                  detection={})

    def _step(self, units: float, label: str, seconds: float,
              reused: bool = False) -> None:
        self.progress.step(units, label, seconds, reused)

    def _train(self, cfg: Config, metric: str) -> dict:
        """:func:`train` in a worker, or its result from an earlier
        invocation (``reused``) without a round trip to a worker."""
        saved = _saved(_run_path(cfg), cfg)
        if saved is not None:
            return dict(saved['result'], reused=True)
        return dict(self.pool.submit(train, cfg, metric).result(), reused=False)

    def _test(self, cfg: Config, checkpoint: str) -> float:
        return self.pool.submit(test, cfg, checkpoint,
                                test_len(self.scale)).result()

    def source(self) -> Dict[int, str]:
        def one(seed: int) -> dict:
            cfg = source_cfg(self.scale, self.data, seed, self.work)
            run = self._train(cfg, 'accuracy/top1')
            run['test'] = self._test(cfg, run['checkpoint'])
            self._step(2 * self.scale.source_iters + self.test_units,
                       f'source model, seed {seed}: val {run["final"]:.1f} '
                       f'test {run["test"]:.1f}', run['seconds'], run['reused'])
            return run

        runs = dict(zip(self.scale.seeds, _concurrently(one, self.scale.seeds)))
        self.results['source'] = {seed: _summary(run) for seed, run in runs.items()}
        return {seed: run['checkpoint'] for seed, run in runs.items()}

    def arm(self, task: str, arm: Arm, sources: Dict[int, str]) -> dict:
        s = self.scale

        def run(seed: int, lr: float) -> Tuple[Config, dict]:
            cfg = target_cfg(task, arm, s, self.data, seed, lr, sources[seed],
                             osp.join(self.work, task, arm.name,
                                      f'lr{lr:g}_seed{seed}'))
            result = self._train(cfg, 'accuracy/top1')
            self._step(s.iters, f'{task} / {arm.name} lr {lr:g} seed {seed}: '
                       f'val {result["final"]:.1f}', result['seconds'],
                       result['reused'])
            return cfg, result

        sweep = dict(zip(s.lrs, _concurrently(
            lambda lr: run(s.seeds[0], lr), s.lrs)))
        best = max(s.lrs, key=lambda lr: sweep[lr][1]['final'])
        runs = [sweep[best]] + _concurrently(lambda seed: run(seed, best),
                                             s.seeds[1:])

        def scored(seed_run: Tuple[int, Tuple[Config, dict]]) -> dict:
            seed, (cfg, result) = seed_run
            start = time.time()
            result['test'] = self._test(cfg, result['checkpoint'])
            self._step(self.test_units, f'{task} / {arm.name} seed {seed}: '
                       f'test {result["test"]:.1f}', time.time() - start,
                       result['reused'])
            return dict(_summary(result), seed=seed)

        return dict(describe=arm.describe, lr=best,
                    sweep={f'{lr:g}': sweep[lr][1]['final'] for lr in s.lrs},
                    sweep_seconds=sum(sweep[lr][1]['seconds'] for lr in s.lrs),
                    runs=_concurrently(scored, zip(s.seeds, runs)))

    def ablations(self, sources: Dict[int, str], ablations, lr: float) -> None:
        """Part 3: the adapters-only recipe at ``lr`` (the one its arm chose
        on the shifted task), changed by each of ``ablations``."""
        s = self.scale
        base = ARM_BY_NAME['qnv2-adapters']

        def one(item: Tuple[Tuple[str, str, Callable], int]) -> dict:
            (name, _, change), seed = item
            cfg = target_cfg('shift', base, s, self.data, seed, lr,
                             sources[seed], osp.join(
                                 self.work, 'ablation', name, f'seed{seed}'))
            change(cfg)
            result = self._train(cfg, 'accuracy/top1')
            result['test'] = self._test(cfg, result['checkpoint'])
            self._step(s.iters + self.test_units, f'ablation {name} seed {seed}: '
                       f'test {result["test"]:.1f}', result['seconds'],
                       result['reused'])
            return dict(_summary(result), seed=seed)

        items = [(ablation, seed) for ablation in ablations for seed in s.seeds]
        runs = _concurrently(one, items)
        for name, describe, _ in ablations:
            self.results['ablation'][name] = dict(
                describe=describe, lr=lr,
                runs=[run for (ablation, _), run in zip(items, runs)
                      if ablation[0] == name])

    def efficiency(self, sources: Dict[int, str], lr: float) -> None:
        """QuadraNet from scratch on ``shift`` for ``scratch_factor`` times
        the adaptation budget at ``lr`` (its arm's choice), val curve only."""
        s = self.scale
        arm = ARM_BY_NAME['quadranet-scratch']
        iters = s.iters * s.scratch_factor

        def one(seed: int) -> dict:
            cfg = target_cfg('shift', arm, s, self.data, seed, lr,
                             sources[seed], osp.join(
                                 self.work, 'efficiency', f'seed{seed}'),
                             iters=iters)
            result = self._train(cfg, 'accuracy/top1')
            self._step(iters, f'QuadraNet from scratch x{s.scratch_factor}, '
                       f'seed {seed}: val {result["final"]:.1f}',
                       result['seconds'], result['reused'])
            return dict(_summary(result), seed=seed)

        self.results['efficiency'] = dict(lr=lr, iters=iters,
                                          runs=_concurrently(one, s.seeds))

    def detection(self) -> None:
        """QNv2 vs first-order demo detector, the same extra classifier
        epochs for both, on a reduced shapes set and schedule."""
        s = self.scale
        shapes = osp.join(self.work, 'shapes')
        start = time.time()
        make_demo_data(shapes, num_train=s.det_train, num_val=s.det_val,
                       img_size=s.det_img, crop_size=s.det_crop, seed=0,
                       skip_existing=True)
        self.results['detection']['data_seconds'] = round(time.time() - start, 1)
        detectors = (
            ('qnv2', osp.join(DEMO, 'qnv2-resnet18_1xb32_shapes-crops.py'),
             osp.join(DEMO, 'mask-rcnn_qnv2-r18_fpn_shapes.py')),
            ('first-order', osp.join(
                STUDY, 'resnet18_1xb32_shapes-crops_extra-epochs.py'),
             osp.join(STUDY, 'mask-rcnn_r18_fpn_shapes.py')))

        def one_seed(seed: int) -> List[dict]:
            cls_cfg = _crops_cfg(osp.join(DEMO, 'resnet18_1xb32_shapes-crops.py'),
                                 shapes, s, seed, s.det_cls_epochs,
                                 osp.join(self.work, 'det', f'seed{seed}', 'classifier'))
            cls = self._train(cls_cfg, 'accuracy/top1')
            first_order = _epoch_ckpt(cls_cfg)
            self._step(s.det_cls_epochs * 10, f'detection seed {seed}: first-order '
                       f'classifier top-1 {cls["final"]:.1f}', cls['seconds'],
                       cls['reused'])

            def one_arm(detector: Tuple[str, str, str]) -> dict:
                name, adapt_path, det_path = detector
                where = osp.join(self.work, 'det', f'seed{seed}', name)
                adapt_cfg = _crops_cfg(adapt_path, shapes, s, seed, None,
                                       osp.join(where, 'classifier'))
                adapt_cfg.model.backbone.init_cfg.checkpoint = first_order
                adapt_cfg.model.head.init_cfg = dict(
                    type='Pretrained', checkpoint=first_order, prefix='head.')
                adapted = self._train(adapt_cfg, 'accuracy/top1')
                det_cfg = _detector_cfg(det_path, shapes, s, seed,
                                        _epoch_ckpt(adapt_cfg),
                                        osp.join(where, 'detector'))
                det = self._train(det_cfg, 'coco/bbox_mAP')
                coco = det['records'][-1]
                self._step(s.det_cls_epochs * 10 / 2 + 6 * s.det_iters,
                           f'detection seed {seed} {name}: classifier '
                           f'{adapted["final"]:.1f}, bbox {coco["coco/bbox_mAP"]:.3f}'
                           f' segm {coco["coco/segm_mAP"]:.3f}',
                           adapted['seconds'] + det['seconds'], det['reused'])
                return dict(
                    seed=seed, classifier_top1=cls['final'],
                    adapted_top1=adapted['final'],
                    bbox_mAP=coco['coco/bbox_mAP'], segm_mAP=coco['coco/segm_mAP'],
                    bbox_mAP_50=coco['coco/bbox_mAP_50'],
                    segm_mAP_50=coco['coco/segm_mAP_50'],
                    seconds=round(adapted['seconds'] + det['seconds'], 1),
                    detector_step_time=det['step_time'])

            return _concurrently(one_arm, detectors)

        per_seed = _concurrently(one_seed, s.seeds)
        self.results['detection'].update(arms={
            name: [runs[i] for runs in per_seed]
            for i, (name, *_) in enumerate(detectors)})

    def classification(self, parts: Sequence[str]) -> Dict[int, str]:
        """Sources, both tasks' arms, then part 3 and the efficiency runs,
        each as soon as the lr it reuses is chosen."""
        sources = self.source()
        ablations = [a for a in ABLATIONS if a[0] in parts]
        wanted = [(task, arm) for task in TASKS if task in parts for arm in ARMS]
        for name in ('qnv2-adapters', 'quadranet-scratch'):  # what they reuse
            if (ablations or 'efficiency' in parts) and 'shift' not in parts:
                wanted.append(('shift', ARM_BY_NAME[name]))

        def arm_then_dependents(item: Tuple[str, Arm]) -> dict:
            task, arm = item
            out = self.arm(task, arm, sources)
            if task == 'shift' and arm.name == 'qnv2-adapters':
                self.ablations(sources, ablations, out['lr'])
            if task == 'shift' and arm.name == 'quadranet-scratch' and \
                    'efficiency' in parts:
                self.efficiency(sources, out['lr'])
            return out

        outs = _concurrently(arm_then_dependents, wanted)
        for (task, arm), out in zip(wanted, outs):
            self.results['tasks'].setdefault(task, {})[arm.name] = out
        return sources

    def run(self, parts: Sequence[str] = PARTS) -> dict:
        """Run ``parts`` (all by default); what they need from other parts
        (source models, the lr the shifted task chose) is run or reused."""
        start = time.time()
        branches = {}
        if 'detection' in parts:
            branches['detection'] = self.detection
        # Everything but the detection part adapts the source models.
        if set(parts) - {'detection'}:
            branches['classification'] = lambda: self.classification(parts)
        with ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context('spawn'),
                initializer=_init_worker, initargs=(self.threads, )) as self.pool:
            done = dict(zip(branches, _concurrently(
                lambda branch: branch(), branches.values())))
        if any(name in parts for name, *_ in ABLATIONS):
            # timed in this process once every worker is done: no other load
            start_ratios = time.time()
            self.results['step_time_ratios'] = step_time_ratios(
                self.scale, self.data, done['classification'][self.scale.seeds[0]])
            self.results['resnet50_flop_ratios'] = resnet50_flop_ratios(
                self.scale.flops_size)
            self._step(0, 'step-time ratios', time.time() - start_ratios)
        self.results.update(
            seconds=round(time.time() - start, 1), workers=self.workers,
            finished=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            machine=f'{platform.machine()}, {os.cpu_count()} CPU cores, '
            f'torch {torch.__version__}, {self.threads} threads per worker')
        return self.results


def _summary(run: dict) -> dict:
    keep = ('final', 'test', 'curve', 'seconds', 'step_time', 'trainable',
            'adapter_params')
    return {k: run[k] for k in keep if k in run}


def _epoch_ckpt(cfg: Config) -> str:
    return osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')


def _crops_cfg(path: str, shapes: str, scale: Scale, seed: int,
               epochs: Optional[int], work_dir: str) -> Config:
    """A demo crop-classifier config on the study's shapes set."""
    cfg = load(path)
    root = osp.join(shapes, 'crops') + '/'
    for loader, resize in (('train_dataloader', 1), ('val_dataloader', 1)):
        cfg[loader].dataset.data_root = root
        cfg[loader].dataset.pipeline[resize].scale = (scale.det_crop, ) * 2
    cfg.test_dataloader = cfg.val_dataloader
    if epochs is not None:
        cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
        cfg.default_hooks.checkpoint.interval = epochs
    cfg.randomness = dict(seed=seed)
    _quiet(cfg, work_dir)
    return cfg


def _detector_cfg(path: str, shapes: str, scale: Scale, seed: int,
                  backbone_ckpt: str, work_dir: str) -> Config:
    """A demo detector config on the study's shapes set, reduced schedule:
    warm-up and stage switch at 1/16 of the iterations, as in the demo."""
    cfg = load(path)
    root = shapes + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    size = (scale.det_img, scale.det_img)
    cfg.train_dataloader.dataset.pipeline[2].scale = size
    # mmengine pauses 2 s at every epoch end of an iteration-based loop.
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.val_dataloader.dataset.pipeline[1].scale = size
    cfg.test_dataloader = cfg.val_dataloader
    ann = osp.join(root, 'annotations', 'instances_val.json')
    cfg.val_evaluator.ann_file = ann
    cfg.test_evaluator = cfg.val_evaluator
    iters = scale.det_iters
    warmup = max(1, iters // 16)
    _schedule(cfg, iters, iters, warmup, start_factor=0.01, log_interval=20)
    for hook in cfg.custom_hooks:
        if hook.type == 'QuadraticStageHook':
            hook.switch_iter = warmup
        if hook.type == 'QuadraticStatsHook':
            hook.interval = iters
    cfg.model.backbone.init_cfg.checkpoint = backbone_ckpt
    cfg.randomness = dict(seed=seed)
    _quiet(cfg, work_dir)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='every arm on a tiny subset (a test, not a result)')
    parser.add_argument('--out', default=osp.join(ROOT, 'docs'),
                        help='writes <out>/study.md and <out>/study/*.png')
    parser.add_argument('--work-dir', default=None,
                        help='runs and checkpoints (default work_dirs/study[-quick])')
    parser.add_argument('--data', default=osp.join(ROOT, 'data', 'fashion_mnist'),
                        help='where the un-gzipped Fashion-MNIST idx files go')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes that train in parallel (default: one '
                        'per CPU core)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads per worker; 1 was faster than 2 on the shared '
                        '2-core machine the study was run on')
    parser.add_argument('--parts', nargs='+', choices=PARTS, default=PARTS,
                        help='run only these parts (their results are kept '
                        'in --work-dir; the report needs all of them)')
    parser.add_argument('--seeds', type=int, nargs='+',
                        help='run only these seeds (with --parts, to split a '
                        'study over processes)')
    parser.add_argument('--report-only', metavar='RESULTS_JSON',
                        help='only (re)write the report from a results.json '
                        'of an earlier run')
    parser.add_argument('--prepare-data', action='store_true',
                        help='only locate and un-gzip Fashion-MNIST')
    args = parser.parse_args()
    try:
        prepare_fashion_mnist(args.data)
    except FileNotFoundError as error:
        raise SystemExit(f'tools/study.py: {error}')
    if args.prepare_data:
        print(f'Fashion-MNIST ready in {args.data}')
        return
    scale = QUICK if args.quick else FULL
    if args.seeds:
        scale = replace(scale, seeds=tuple(args.seeds))
    torch.set_num_threads(args.threads)
    work = args.work_dir or osp.join(
        ROOT, 'work_dirs', 'study' + ('-quick' if args.quick else ''))
    os.chdir(ROOT)
    if args.report_only:
        with open(args.report_only) as f:
            results = json.load(f)
    else:
        results = Study(scale, osp.abspath(work), osp.abspath(args.data),
                        args.parts, workers=args.workers,
                        threads=args.threads).run(args.parts)
        if not set(TASKS) <= set(args.parts):
            print(f'parts {args.parts} done; the report needs both tasks '
                  f'{TASKS} (finished runs are reused)')
            return
        if 'detection' not in args.parts:
            results['detection']['note'] = (
                'It was left out of this invocation\'s `--parts`.')
        with open(osp.join(work, 'results.json'), 'w') as f:
            json.dump(results, f, indent=1)
    os.makedirs(args.out, exist_ok=True)
    report = write_report(results, args.out, data_dir=args.data)
    print(f'\nstudy ({scale.name}) done in {_mmss(results["seconds"])}: {report}')


if __name__ == '__main__':
    main()
