"""The runner: every training and test of the study in a pool of worker
processes, each result cached next to its checkpoint (keyed by the config's
fingerprint, :mod:`quadra_mm.comparison.cache`, so a stopped study
continues), and the comparison tool's progress bar with the time left,
weighted by each run's iterations."""

import copy
import json
import math
import os
import os.path as osp
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from quadra_mm.cli import build_runner
from quadra_mm.comparison.cache import fingerprint, load_cached, write_json
from quadra_mm.comparison.executor import Progress, concurrently, process_pool
from quadra_mm.datasets import make_demo_data
from quadra_mm.hooks import phase_one_frozen_parameters
from quadra_mm.ops import is_adapter_param_name

from .arms import (
    ABLATIONS,
    ARM_BY_NAME,
    ARMS,
    PARTS,
    Arm,
    adapters_only,
    linear_probe,
    lora,
    stages,
    train_everything,
)
from .configs import (
    crops_cfg,
    detector_cfg,
    epoch_checkpoint,
    quiet,
    source_cfg,
    target_cfg,
    test_len,
)
from .pruning import (
    IN_TRAINING,
    IN_TRAINING_SCORER,
    SCORERS,
    prune_and_test,
    prune_in_training,
    pruning_cfg,
    result_path,
)
from .results import summary
from .same_task import run_same_task, same_task_units
from .scale import DEMO, ROOT, STUDY, TASKS, Scale


def _read_scalars(log_dir: str) -> List[dict]:
    path = osp.join(log_dir, 'vis_data', 'scalars.json')
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cached(path: str, cfg: Config, compute: Callable[[], object]):
    """``compute()``, or what it returned for the same config before.

    Each run's result is kept next to its checkpoint (``path``), keyed by
    :func:`quadra_mm.comparison.cache.fingerprint`: a study stopped half-way (or split over several
    processes with ``--parts``) continues where it stopped, and a changed
    config is run again."""
    key = fingerprint(cfg)
    saved = load_cached(path, key)
    if saved is not None:
        return saved
    result = compute()
    write_json(path, dict(fingerprint=key, result=result))
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
    adapter = sum(p.numel() for name, p in model.named_parameters() if is_adapter_param_name(name))
    records = _read_scalars(runner.log_dir)
    curve = [(r['step'], r[metric]) for r in records if metric in r]
    times = [r['time'] for r in records if 'loss' in r and 'time' in r]
    iters = cfg.train_cfg.get('max_iters')
    ckpt = osp.join(cfg.work_dir, f'iter_{iters}.pth') if iters else None
    result = dict(
        curve=curve,
        final=curve[-1][1] if curve else math.nan,
        seconds=round(seconds, 1),
        step_time=sum(times) / len(times) if times else math.nan,
        trainable=trainable,
        adapter_params=adapter,
        records=[r for r in records if any(k.startswith('coco/') for k in r)],
        checkpoint=ckpt,
        work_dir=cfg.work_dir,
    )
    del runner, model
    return result


def test(cfg: Config, checkpoint: str, expected_len: int) -> float:
    """Top-1 of ``checkpoint`` on the test split of ``cfg``, after checking
    that split's size (mmpretrain's FashionMNIST quirk, SPEC section 4)."""
    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    quiet(cfg, osp.join(cfg.work_dir, 'test'))
    return cached(osp.join(cfg.work_dir, 'study_test.json'), cfg, lambda: _test(cfg, expected_len))


def _test(cfg: Config, expected_len: int) -> float:
    runner = build_runner(cfg)
    size = len(runner.test_dataloader.dataset)
    if size != expected_len:
        raise RuntimeError(
            f'test split of {cfg.filename} has {size} images, expected {expected_len}'
        )
    metrics = runner.test()
    del runner
    return float(metrics['accuracy/top1'])


def pruned_and_tested(
    cfg: Config, checkpoint: str, metric: str, reported: Tuple[str, ...], seed: int
) -> dict:
    """:func:`.pruning.prune_and_test` (or its earlier result for the same
    config and checkpoint), in a worker."""
    return cached(
        result_path(cfg.work_dir),
        cfg,
        lambda: prune_and_test(cfg, checkpoint, metric, reported, seed),
    )


def step_time_ratios(scale: Scale, data: str, source: str, steps: int = 3) -> Dict[str, float]:
    """Train-step time of each arm and part-3 variant on task (b) over that
    of full first-order fine-tuning: forward, cross-entropy, backward and
    AdamW on the parameters the arm trains, batch ``scale.batch``, models
    measured in turn in this process (the same machine load), median of
    ``scale.timing_repeats`` rounds of ``steps`` steps each."""
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope('mmpretrain')
    variants: Dict[str, Tuple[str, Callable[[Config], None], bool]] = {
        'full-ft': ('full-ft', train_everything, False),
        'linear-probe': ('linear-probe', linear_probe, False),
        'lora': ('lora', lora, True),
        'qnv2-adapters': ('qnv2-adapters', adapters_only, True),
        'qnv2 stage 2 (everything trains)': ('qnv2-stages', stages, False),
    }
    for name, _, change in ABLATIONS:
        variants[name] = (
            'qnv2-adapters',
            lambda cfg, iters, change=change: (adapters_only(cfg, iters), change(cfg)),
            True,
        )
    models = {}
    for label, (arm, configure, stage1) in variants.items():
        cfg = target_cfg(
            'shift',
            ARM_BY_NAME[arm],
            scale,
            data,
            0,
            1e-3,
            source,
            osp.join(ROOT, 'work_dirs', 'unused'),
        )
        configure(cfg, scale.iters)
        model = MODELS.build(cfg.model)
        model.train()
        if stage1:  # stage 1: the primary terms are frozen
            for param in phase_one_frozen_parameters(model, 'backbone').values():
                param.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        models[label] = (model, torch.optim.AdamW(params, lr=1e-3))
    inputs = torch.randn(scale.batch, 1, 28, 28)
    labels = torch.randint(0, 5, (scale.batch,))
    times: Dict[str, List[float]] = {label: [] for label in models}
    for _ in range(scale.timing_repeats + 1):  # the first round warms up
        for label, (model, optimizer) in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = torch.nn.functional.cross_entropy(model(inputs, mode='tensor'), labels)
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
    adapted = dict(
        type='QuadraNetV2',
        backbone=plain,
        targets='resnet',
        adapter=dict(rank=8, kernel_size=3, dilation=2, interaction='quadratic'),
    )
    variants: Dict[str, Callable[[Config], None]] = {
        'lora': lambda cfg: cfg.model.backbone.adapter.update(interaction='linear'),
        'qnv2-adapters': lambda cfg: None,
        **{name: change for name, _, change in ABLATIONS},
    }
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


class Study:
    """The study's parts, each run from a thread of this process that hands
    its trainings and tests to a pool of ``workers`` processes: independent
    runs (lr sweeps, seeds, arms, the detection chain) overlap, dependent
    ones (the seeds after their arm's sweep, part 3 after the lr it reuses)
    wait for what they need."""

    def __init__(
        self,
        scale: Scale,
        work: str,
        data: str,
        parts: Sequence[str] = PARTS,
        workers: int = 1,
        threads: int = 1,
    ) -> None:
        self.scale, self.work, self.data = scale, work, data
        self.parts, self.workers, self.threads = tuple(parts), workers, threads
        # per arm label, per seed: the config and final checkpoint of the
        # kept run (what part 6 prunes)
        self.kept: Dict[str, Dict[int, Tuple[Config, str]]] = {}
        self.pool: Optional[ProcessPoolExecutor] = None
        s = scale
        seeds = len(s.seeds)
        # a test pass: forward only, about a third of a training image
        self.test_units = 5 * (s.test_per_class or 1000) / (3 * s.batch)
        run = s.iters + self.test_units
        units = seeds * (2 * s.source_iters + self.test_units)
        arm_units = len(s.lrs) * s.iters + (seeds - 1) * s.iters + seeds * self.test_units
        units += sum(t in parts for t in TASKS) * len(ARMS) * arm_units
        # what pruning needs when its parts are not run: one arm, the detectors
        units += ('pruning' in parts and 'shift' not in parts) * arm_units
        units += sum(name in parts for name, *_ in ABLATIONS) * seeds * run
        units += ('efficiency' in parts) * seeds * s.iters * s.scratch_factor
        # detection: per seed 2 classifiers + 2 detectors; a detector
        # iteration costs about 6 classification iterations here.
        units += (
            ('detection' in parts or 'pruning' in parts)
            * seeds
            * (2 * s.det_cls_epochs * 10 + 2 * 6 * s.det_iters)
        )
        units += ('same-task' in parts) * same_task_units(s, self.test_units)
        # pruning: about 9 val and 12 test passes per seed and protocol; a
        # detector image costs about 20 classification images
        self.pruning_units = dict(
            shift=20 * self.test_units, detection=20 * 20 * s.det_val / (3 * s.batch)
        )
        units += ('pruning' in parts) * seeds * sum(self.pruning_units.values())
        # pruned in training: a training run, 9 val passes and a test pass
        self.in_training_units = s.iters + 2 * self.test_units
        units += ('pruning' in parts) * seeds * len(IN_TRAINING) * self.in_training_units
        self.progress = Progress(units)
        self.results: dict = dict(
            scale=asdict(scale), tasks={}, ablation={}, detection={}, pruning={}
        )

    def same_task(self) -> None:
        """The same-task part (:mod:`.same_task`)."""
        start = time.time()
        self.results['same_task'] = run_same_task(self)
        self.results['same_task'].update(
            scale=asdict(self.scale.same_task), seconds=round(time.time() - start, 1)
        )

    def step(self, units: float, label: str, seconds: float, reused: bool = False) -> None:
        """``units`` of the study's work done (``reused``: by an earlier
        invocation), ``seconds`` what it took."""
        self.progress.step(f'{label}: {seconds:.1f} s', reused, units)

    def train_run(self, cfg: Config, metric: str) -> dict:
        """:func:`train` in a worker, or its result from an earlier
        invocation (``reused``) without a round trip to a worker."""
        saved = load_cached(_run_path(cfg), fingerprint(cfg))
        if saved is not None:
            return dict(saved, reused=True)
        return dict(self.pool.submit(train, cfg, metric).result(), reused=False)

    def test_run(self, cfg: Config, checkpoint: str, expected_len: Optional[int] = None) -> float:
        return self.pool.submit(
            test, cfg, checkpoint, expected_len or test_len(self.scale)
        ).result()

    def source(self) -> Dict[int, str]:
        def one(seed: int) -> dict:
            cfg = source_cfg(self.scale, self.data, seed, self.work)
            run = self.train_run(cfg, 'accuracy/top1')
            run['test'] = self.test_run(cfg, run['checkpoint'])
            self.step(
                2 * self.scale.source_iters + self.test_units,
                f'source model, seed {seed}: val {run["final"]:.1f} test {run["test"]:.1f}',
                run['seconds'],
                run['reused'],
            )
            return run

        runs = dict(zip(self.scale.seeds, concurrently(one, self.scale.seeds)))
        self.results['source'] = {seed: summary(run) for seed, run in runs.items()}
        return {seed: run['checkpoint'] for seed, run in runs.items()}

    def arm(self, task: str, arm: Arm, sources: Dict[int, str]) -> dict:
        s = self.scale
        return self.swept(
            f'{task} / {arm.name}',
            arm.describe,
            s.lrs,
            s.iters,
            lambda seed, lr: target_cfg(
                task,
                arm,
                s,
                self.data,
                seed,
                lr,
                sources[seed],
                osp.join(self.work, task, arm.name, f'lr{lr:g}_seed{seed}'),
            ),
            test_len(s),
        )

    def swept(
        self,
        label: str,
        describe: str,
        lrs: Sequence[float],
        iters: int,
        make_cfg: Callable[[int, float], Config],
        expected_test_len: int,
    ) -> dict:
        """One arm: ``make_cfg(seed, lr)`` trained at every lr of ``lrs`` on
        the first seed, the lr with the best final val accuracy kept, the
        other seeds trained at it, every kept run tested once."""
        seeds = self.scale.seeds

        def run(seed: int, lr: float) -> Tuple[Config, dict]:
            cfg = make_cfg(seed, lr)
            result = self.train_run(cfg, 'accuracy/top1')
            self.step(
                iters,
                f'{label} lr {lr:g} seed {seed}: val {result["final"]:.1f}',
                result['seconds'],
                result['reused'],
            )
            return cfg, result

        sweep = dict(zip(lrs, concurrently(lambda lr: run(seeds[0], lr), lrs)))
        best = max(lrs, key=lambda lr: sweep[lr][1]['final'])
        runs = [sweep[best]] + concurrently(lambda seed: run(seed, best), seeds[1:])

        def scored(seed_run: Tuple[int, Tuple[Config, dict]]) -> dict:
            seed, (cfg, result) = seed_run
            self.kept.setdefault(label, {})[seed] = (cfg, result['checkpoint'])
            start = time.time()
            result['test'] = self.test_run(cfg, result['checkpoint'], expected_test_len)
            self.step(
                self.test_units,
                f'{label} seed {seed}: test {result["test"]:.1f}',
                time.time() - start,
                result['reused'],
            )
            return dict(summary(result), seed=seed)

        return dict(
            describe=describe,
            lr=best,
            sweep={f'{lr:g}': sweep[lr][1]['final'] for lr in lrs},
            sweep_seconds=sum(sweep[lr][1]['seconds'] for lr in lrs),
            runs=concurrently(scored, zip(seeds, runs)),
        )

    def ablations(self, sources: Dict[int, str], ablations, lr: float) -> None:
        """Part 3: the adapters-only recipe at ``lr`` (the one its arm chose
        on the shifted task), changed by each of ``ablations``."""
        s = self.scale
        base = ARM_BY_NAME['qnv2-adapters']

        def one(item: Tuple[Tuple[str, str, Callable], int]) -> dict:
            (name, _, change), seed = item
            cfg = target_cfg(
                'shift',
                base,
                s,
                self.data,
                seed,
                lr,
                sources[seed],
                osp.join(self.work, 'ablation', name, f'seed{seed}'),
            )
            change(cfg)
            result = self.train_run(cfg, 'accuracy/top1')
            result['test'] = self.test_run(cfg, result['checkpoint'])
            self.step(
                s.iters + self.test_units,
                f'ablation {name} seed {seed}: test {result["test"]:.1f}',
                result['seconds'],
                result['reused'],
            )
            return dict(summary(result), seed=seed)

        items = [(ablation, seed) for ablation in ablations for seed in s.seeds]
        runs = concurrently(one, items)
        for name, describe, _ in ablations:
            self.results['ablation'][name] = dict(
                describe=describe,
                lr=lr,
                runs=[run for (ablation, _), run in zip(items, runs) if ablation[0] == name],
            )

    def efficiency(self, sources: Dict[int, str], lr: float) -> None:
        """QuadraNet from scratch on ``shift`` for ``scratch_factor`` times
        the adaptation budget at ``lr`` (its arm's choice), val curve only."""
        s = self.scale
        arm = ARM_BY_NAME['quadranet-scratch']
        iters = s.iters * s.scratch_factor

        def one(seed: int) -> dict:
            cfg = target_cfg(
                'shift',
                arm,
                s,
                self.data,
                seed,
                lr,
                sources[seed],
                osp.join(self.work, 'efficiency', f'seed{seed}'),
                iters=iters,
            )
            result = self.train_run(cfg, 'accuracy/top1')
            self.step(
                iters,
                f'QuadraNet from scratch x{s.scratch_factor}, '
                f'seed {seed}: val {result["final"]:.1f}',
                result['seconds'],
                result['reused'],
            )
            return dict(summary(result), seed=seed)

        self.results['efficiency'] = dict(lr=lr, iters=iters, runs=concurrently(one, s.seeds))

    def detection(self) -> None:
        """QNv2 vs first-order demo detector, the same extra classifier
        epochs for both, on a reduced shapes set and schedule."""
        s = self.scale
        shapes = osp.join(self.work, 'shapes')
        start = time.time()
        make_demo_data(
            shapes,
            num_train=s.det_train,
            num_val=s.det_val,
            img_size=s.det_img,
            crop_size=s.det_crop,
            seed=0,
            skip_existing=True,
        )
        self.results['detection']['data_seconds'] = round(time.time() - start, 1)
        detectors = (
            (
                'qnv2',
                osp.join(DEMO, 'qnv2-resnet18_1xb32_shapes-crops.py'),
                osp.join(DEMO, 'mask-rcnn_qnv2-r18_fpn_shapes.py'),
            ),
            (
                'first-order',
                osp.join(STUDY, 'resnet18_1xb32_shapes-crops_extra-epochs.py'),
                osp.join(STUDY, 'mask-rcnn_r18_fpn_shapes.py'),
            ),
        )

        def one_seed(seed: int) -> List[dict]:
            cls_cfg = crops_cfg(
                osp.join(DEMO, 'resnet18_1xb32_shapes-crops.py'),
                shapes,
                s,
                seed,
                s.det_cls_epochs,
                osp.join(self.work, 'det', f'seed{seed}', 'classifier'),
            )
            cls = self.train_run(cls_cfg, 'accuracy/top1')
            first_order = epoch_checkpoint(cls_cfg)
            self.step(
                s.det_cls_epochs * 10,
                f'detection seed {seed}: first-order classifier top-1 {cls["final"]:.1f}',
                cls['seconds'],
                cls['reused'],
            )

            def one_arm(detector: Tuple[str, str, str]) -> dict:
                name, adapt_path, det_path = detector
                where = osp.join(self.work, 'det', f'seed{seed}', name)
                adapt_cfg = crops_cfg(
                    adapt_path, shapes, s, seed, None, osp.join(where, 'classifier')
                )
                adapt_cfg.model.backbone.init_cfg.checkpoint = first_order
                adapt_cfg.model.head.init_cfg = dict(
                    type='Pretrained', checkpoint=first_order, prefix='head.'
                )
                adapted = self.train_run(adapt_cfg, 'accuracy/top1')
                det_cfg = detector_cfg(
                    det_path,
                    shapes,
                    s,
                    seed,
                    epoch_checkpoint(adapt_cfg),
                    osp.join(where, 'detector'),
                )
                det = self.train_run(det_cfg, 'coco/bbox_mAP')
                self.kept.setdefault(f'detection / {name}', {})[seed] = (det_cfg, det['checkpoint'])
                coco = det['records'][-1]
                self.step(
                    s.det_cls_epochs * 10 / 2 + 6 * s.det_iters,
                    f'detection seed {seed} {name}: classifier '
                    f'{adapted["final"]:.1f}, bbox {coco["coco/bbox_mAP"]:.3f}'
                    f' segm {coco["coco/segm_mAP"]:.3f}',
                    adapted['seconds'] + det['seconds'],
                    det['reused'],
                )
                return dict(
                    seed=seed,
                    classifier_top1=cls['final'],
                    adapted_top1=adapted['final'],
                    bbox_mAP=coco['coco/bbox_mAP'],
                    segm_mAP=coco['coco/segm_mAP'],
                    bbox_mAP_50=coco['coco/bbox_mAP_50'],
                    segm_mAP_50=coco['coco/segm_mAP_50'],
                    seconds=round(adapted['seconds'] + det['seconds'], 1),
                    detector_step_time=det['step_time'],
                )

            return concurrently(one_arm, detectors)

        per_seed = concurrently(one_seed, s.seeds)
        self.results['detection'].update(
            arms={name: [runs[i] for runs in per_seed] for i, (name, *_) in enumerate(detectors)}
        )
        if 'pruning' in self.parts:
            self.pruning(
                'detection',
                self._detection_test_set(self.kept['detection / qnv2']),
                'coco/bbox_mAP',
                ('coco/bbox_mAP', 'coco/segm_mAP'),
            )

    def _detection_test_set(
        self, trained: Dict[int, Tuple[Config, str]]
    ) -> Dict[int, Tuple[Config, str]]:
        """``trained``'s detectors with a test set of their own: part 4
        reports its val set, which part 6's ablation scorer ranks on, so the
        pruned detectors are scored on ``det_val`` other images (the
        generator's seed 1)."""
        s = self.scale
        shapes = osp.join(self.work, 'shapes-test')
        make_demo_data(
            shapes,
            num_train=0,
            num_val=s.det_val,
            img_size=s.det_img,
            crop_size=s.det_crop,
            seed=1,
            skip_existing=True,
        )
        tested = {}
        for seed, (cfg, checkpoint) in trained.items():
            cfg = copy.deepcopy(cfg)
            cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
            cfg.test_dataloader.dataset.data_root = shapes + '/'
            cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
            cfg.test_evaluator.ann_file = osp.join(shapes, 'annotations', 'instances_val.json')
            tested[seed] = (cfg, checkpoint)
        return tested

    def pruning(
        self,
        protocol: str,
        trained: Dict[int, Tuple[Config, str]],
        metric: str,
        reported: Tuple[str, ...],
    ) -> None:
        """Part 6 (:mod:`.pruning`) on ``trained`` (per seed: the config
        and final checkpoint of a kept run), scored on val by ``metric``."""

        def one(seed: int) -> dict:
            cfg, checkpoint = trained[seed]
            cfg = pruning_cfg(cfg, osp.join(self.work, 'pruning', protocol, f'seed{seed}'))
            cfg.pruned_checkpoint = checkpoint  # in the result's fingerprint
            saved = load_cached(result_path(cfg.work_dir), fingerprint(cfg))
            start = time.time()
            result = (
                saved
                if saved is not None
                else self.pool.submit(
                    pruned_and_tested, cfg, checkpoint, metric, reported, seed
                ).result()
            )
            unpruned = result['settings']['ablation']['0 %']['test'][reported[0]]
            self.step(
                self.pruning_units[protocol],
                f'pruning {protocol} seed {seed}: '
                f'{len(result["adapters"])} adapters scored, unpruned '
                f'test {unpruned:.3g}',
                time.time() - start,
                saved is not None,
            )
            return result

        self.results['pruning'][protocol] = dict(
            metric=metric,
            reported=list(reported),
            scorers=list(SCORERS),
            runs=concurrently(one, self.scale.seeds),
        )

    def pruned_in_training(self, sources: Dict[int, str], lr: float) -> None:
        """Part 6 on task (b), pruned in training (:mod:`.pruning`): the
        adapters-only recipe at ``lr`` (its arm's choice), every setting of
        ``IN_TRAINING`` pruned at half the iterations, trained on, tested."""
        s = self.scale
        base = ARM_BY_NAME['qnv2-adapters']
        prune_iter = s.iters // 2

        def one(item: Tuple[str, int]) -> dict:
            setting, seed = item
            cfg = target_cfg(
                'shift',
                base,
                s,
                self.data,
                seed,
                lr,
                sources[seed],
                osp.join(
                    self.work,
                    'pruning',
                    'shift-in-training',
                    IN_TRAINING[setting][1],
                    f'seed{seed}',
                ),
            )
            prune_in_training(cfg, setting, prune_iter)
            result = self.train_run(cfg, 'accuracy/top1')
            result['test'] = self.test_run(cfg, result['checkpoint'])
            with open(osp.join(cfg.work_dir, 'adapter_pruning.json')) as f:
                pruning = json.load(f)
            self.step(
                self.in_training_units,
                f'pruned in training, {setting}, seed '
                f'{seed}: {len(pruning["pruned"])} adapters off at iteration '
                f'{prune_iter}, test {result["test"]:.1f}',
                result['seconds'],
                result['reused'],
            )
            return dict(
                summary(result),
                seed=seed,
                pruned=len(pruning['pruned']),
                flops_ratio=pruning['flops_ratio_after'],
                adapters=pruning['pruned'],
            )

        items = [(setting, seed) for setting in IN_TRAINING for seed in s.seeds]
        runs = concurrently(one, items)
        self.results['pruning']['shift']['in_training'] = dict(
            prune_iter=prune_iter,
            iters=s.iters,
            scorer=IN_TRAINING_SCORER,
            lr=lr,
            settings={
                setting: [run for (name, _), run in zip(items, runs) if name == setting]
                for setting in IN_TRAINING
            },
        )

    def classification(self, parts: Sequence[str]) -> Dict[int, str]:
        """Sources, both tasks' arms, then part 3 and the efficiency runs,
        each as soon as the lr it reuses is chosen."""
        sources = self.source()
        ablations = [a for a in ABLATIONS if a[0] in parts]
        wanted = [(task, arm) for task in TASKS if task in parts for arm in ARMS]
        for name in ('qnv2-adapters', 'quadranet-scratch'):  # what they reuse
            if (ablations or 'efficiency' in parts) and 'shift' not in parts:
                wanted.append(('shift', ARM_BY_NAME[name]))
        if 'pruning' in parts and ('shift', ARM_BY_NAME['qnv2-adapters']) not in wanted:
            wanted.append(('shift', ARM_BY_NAME['qnv2-adapters']))

        def arm_then_dependents(item: Tuple[str, Arm]) -> dict:
            task, arm = item
            out = self.arm(task, arm, sources)
            if task == 'shift' and arm.name == 'qnv2-adapters':
                self.ablations(sources, ablations, out['lr'])
                if 'pruning' in parts:
                    self.pruning(
                        'shift',
                        self.kept['shift / qnv2-adapters'],
                        'accuracy/top1',
                        ('accuracy/top1',),
                    )
                    self.pruned_in_training(sources, out['lr'])
            if task == 'shift' and arm.name == 'quadranet-scratch' and 'efficiency' in parts:
                self.efficiency(sources, out['lr'])
            return out

        outs = concurrently(arm_then_dependents, wanted)
        for (task, arm), out in zip(wanted, outs):
            self.results['tasks'].setdefault(task, {})[arm.name] = out
        return sources

    def run(self, parts: Sequence[str] = PARTS) -> dict:
        """Run ``parts`` (all by default); what they need from other parts
        (source models, the lr the shifted task chose) is run or reused."""
        start = time.time()
        branches = {}
        if 'detection' in parts or 'pruning' in parts:
            branches['detection'] = self.detection
        if 'same-task' in parts:
            branches['same-task'] = self.same_task
        # Every other part adapts the source models.
        if set(parts) - {'detection', 'same-task'}:
            branches['classification'] = lambda: self.classification(parts)
        with process_pool(self.workers, self.threads) as self.pool:
            done = dict(zip(branches, concurrently(lambda branch: branch(), branches.values())))
        if any(name in parts for name, *_ in ABLATIONS):
            # timed in this process once every worker is done: no other load
            start_ratios = time.time()
            self.results['step_time_ratios'] = step_time_ratios(
                self.scale, self.data, done['classification'][self.scale.seeds[0]]
            )
            self.results['resnet50_flop_ratios'] = resnet50_flop_ratios(self.scale.flops_size)
            self.step(0, 'step-time ratios', time.time() - start_ratios)
        self.results.update(
            seconds=round(time.time() - start, 1),
            workers=self.workers,
            finished=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            machine=f'{platform.machine()}, {os.cpu_count()} CPU cores, '
            f'torch {torch.__version__}, {self.threads} threads per worker',
        )
        return self.results
