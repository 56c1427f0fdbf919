"""The protocol of a comparison: every arm on the same data, schedule and
seeds; per arm an optional lr sweep on the first seed, the lr with the best
last val metric kept (the choice recorded), then every seed trained at it and
tested once on the test split. Everything the protocol needs is checked before
the first run starts."""

import copy
import os
import os.path as osp
import platform
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config

from .arms import Arm, arm_config, parse_arms
from .checks import (
    ComparisonError,
    check_backbone,
    check_files,
    check_launcher,
    check_metric,
    check_test_split,
    produced_metrics,
)
from .executor import Executor, Launch, Progress, Run, mmss

__all__ = ['Comparison', 'prepare', 'run_comparison', 'reported_metrics']


@dataclass
class Comparison:
    """A checked comparison: the base config and each arm's config."""

    config: str
    base: Config
    arms: List[Arm]
    arm_cfgs: Dict[str, Config]
    seeds: List[int]
    lrs: Optional[List[float]]
    metric: str
    reported: List[str]
    reference: str
    work_dir: str
    launch: Launch
    u_lr_mult: float
    workers: int = 1
    command: str = ''
    options: Dict[str, object] = field(default_factory=dict)


def reported_metrics(cfg: Config, metric: str) -> List[str]:
    """``metric`` and the headline test metrics the test evaluator
    produces (COCO ``*_mAP``, ``accuracy/top*``)."""
    produced, _ = produced_metrics(cfg.test_evaluator)
    extra = [m for m in produced if m.endswith('_mAP') or '/top' in m]
    return list(dict.fromkeys([metric, *extra]))


def _load(path: str, options: Optional[dict]) -> Config:
    if not osp.isfile(path):
        raise ComparisonError(f'config file not found: {path}')
    parsed = Config.fromfile(path)
    # without yapf: the Runner formats its config several times (seconds each)
    cfg = Config(
        parsed.to_dict(), cfg_text=parsed.text, filename=parsed.filename, format_python_code=False
    )
    if options:
        cfg.merge_from_dict(options)
    return cfg


def prepare(
    config: str,
    arms: Sequence[str],
    seeds: Sequence[int],
    work_dir: str,
    lrs: Optional[Sequence[float]] = None,
    metric: Optional[str] = None,
    reference: Optional[str] = None,
    cfg_options: Optional[dict] = None,
    launch: Launch = Launch(),
    u_lr_mult: float = 16.0,
    workers: int = 1,
) -> Comparison:
    """Load ``config`` (``cfg_options`` merged), check it and the options,
    and make every arm's config.

    Raises:
        ComparisonError: with the culprit named, before anything trains.
    """
    parsed = parse_arms(arms)
    check_launcher(launch.launcher, launch.nproc, launch.partition)
    cfg = _load(config, cfg_options)
    check_backbone(cfg)
    check_test_split(cfg)
    metric = check_metric(cfg, metric)
    check_files(cfg)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ComparisonError(f'--seeds {list(seeds)}: one or more distinct seeds')
    if lrs is not None and (not lrs or any(lr <= 0 for lr in lrs)):
        raise ComparisonError(f'--lrs {list(lrs)}: positive learning rates')
    if lrs is not None and 'lr' not in (cfg.optim_wrapper.get('optimizer') or {}):
        raise ComparisonError(f'{cfg.filename}: --lrs needs optim_wrapper.optimizer.lr')
    if u_lr_mult <= 0:
        raise ComparisonError(f'--u-lr-mult {u_lr_mult}: a positive multiplier')
    names = [arm.name for arm in parsed]
    reference = reference or ('full-ft' if 'full-ft' in names else names[0])
    if reference not in names:
        raise ComparisonError(f'--reference {reference}: not among the arms {names}')
    arm_cfgs = {arm.name: arm_config(cfg, arm, u_lr_mult) for arm in parsed}
    return Comparison(
        config=config,
        base=cfg,
        arms=parsed,
        arm_cfgs=arm_cfgs,
        seeds=list(seeds),
        lrs=list(lrs) if lrs else None,
        metric=metric,
        reported=reported_metrics(cfg, metric),
        reference=reference,
        work_dir=work_dir,
        launch=launch,
        u_lr_mult=u_lr_mult,
        workers=workers,
        options=dict(cfg_options or {}),
    )


def _run(comparison: Comparison, arm: str, seed: int, lr: Optional[float]) -> Run:
    cfg = copy.deepcopy(comparison.arm_cfgs[arm])
    if lr is not None:
        cfg.optim_wrapper.optimizer.lr = lr
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    where = f'lr{lr:g}_seed{seed}' if lr is not None else f'seed{seed}'
    cfg.work_dir = osp.join(comparison.work_dir, 'runs', arm, where)
    label = f'{arm}' + (f' lr {lr:g}' if lr is not None else '') + f' seed {seed}'
    return Run(label, cfg)


def _check_metric_produced(comparison: Comparison, result: dict, label: str) -> None:
    for split, keys in (('val', [comparison.metric]), ('test', comparison.reported)):
        missing = [k for k in keys if k not in result[split]]
        if missing:
            raise ComparisonError(
                f'{label}: the {split} evaluator returned no '
                f'{missing} (it returned {sorted(result[split])})'
            )


def run_comparison(comparison: Comparison) -> dict:
    """Run (or reuse) every run of ``comparison``; its results."""
    c = comparison
    seeds, lrs = c.seeds, c.lrs
    sweep_runs = len(lrs) if lrs and len(lrs) > 1 else 0
    total = len(c.arms) * (sweep_runs + len(seeds) - (1 if sweep_runs else 0))
    progress = Progress(total, workers=c.workers)
    executor = Executor(c.launch, progress, c.workers)

    def describe(result: dict) -> str:
        return f': val {c.metric} {result["val"].get(c.metric, float("nan")):.4g}'

    start = time.time()
    chosen: Dict[str, Optional[float]] = {arm.name: lrs[0] if lrs else None for arm in c.arms}
    sweeps: Dict[str, Dict[str, float]] = {}
    kept: Dict[str, dict] = {}  # the sweep's run at the chosen lr: the first seed's
    if sweep_runs:
        runs = [_run(c, arm.name, seeds[0], lr) for arm in c.arms for lr in lrs]
        results = executor.map(runs, describe)
        for run, result in zip(runs, results):
            _check_metric_produced(c, result, run.label)
        for index, arm in enumerate(c.arms):
            swept = results[index * len(lrs) : (index + 1) * len(lrs)]
            values = [r['val'][c.metric] for r in swept]
            best = max(range(len(lrs)), key=values.__getitem__)
            sweeps[arm.name] = {f'{lr:g}': v for lr, v in zip(lrs, values)}
            chosen[arm.name], kept[arm.name] = lrs[best], swept[best]
    todo = [
        (arm.name, seed)
        for arm in c.arms
        for seed in seeds
        if not (arm.name in kept and seed == seeds[0])
    ]
    runs = [_run(c, arm, seed, chosen[arm]) for arm, seed in todo]
    results = executor.map(runs, describe)
    for run, result in zip(runs, results):
        _check_metric_produced(c, result, run.label)
    by_run = dict(zip(todo, results))
    by_run.update({(arm, seeds[0]): result for arm, result in kept.items()})
    arms = {}
    for arm in c.arms:
        arms[arm.name] = dict(
            describe=arm.describe,
            overrides={k: str(v) for k, v in arm.overrides.items()},
            lr=chosen[arm.name],
            sweep=sweeps.get(arm.name),
            runs=[dict(by_run[arm.name, seed], seed=seed) for seed in seeds],
        )
    seconds = time.time() - start
    print(
        f'comparison: {total} runs ({int(progress.reused)} cached) in {mmss(seconds)}', flush=True
    )
    train_cfg = c.base.get('train_cfg') or {}
    return dict(
        config=c.config,
        command=c.command,
        cfg_options={k: str(v) for k, v in c.options.items()},
        metric=c.metric,
        reported=c.reported,
        reference=c.reference,
        seeds=seeds,
        lrs=lrs,
        u_lr_mult=c.u_lr_mult,
        schedule={
            k: train_cfg[k] for k in ('max_iters', 'max_epochs', 'val_interval') if k in train_cfg
        },
        launch=c.launch.key(),
        workers=c.workers,
        arms=arms,
        seconds=round(seconds, 1),
        trained=int(progress.done),
        cached=int(progress.reused),
        finished=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        machine=f'{platform.machine()}, {os.cpu_count()} CPU cores, '
        f'torch {torch.__version__}, '
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'),
    )
