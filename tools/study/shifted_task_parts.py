"""The parts trained on task (b) at the lr an arm chose there, each run with a
:class:`~.runner.Study`'s pool: part 3 (the adapters-only recipe changed by
each ablation of :data:`~.arms.ABLATIONS`) and the efficiency run (QuadraNet
from scratch for several times the adaptation budget)."""

import os.path as osp
from typing import Callable, Dict, Tuple

from quadra_mm.comparison.executor import concurrently

from .arms import ARM_BY_NAME
from .configs import target_cfg
from .results import summary

__all__ = ['run_ablations', 'run_efficiency']


def run_ablations(study, sources: Dict[int, str], ablations, lr: float) -> None:
    """Part 3: the adapters-only recipe at ``lr`` (the one its arm chose
    on the shifted task), changed by each of ``ablations``."""
    s = study.scale
    base = ARM_BY_NAME['qnv2-adapters']

    def one(item: Tuple[Tuple[str, str, Callable], int]) -> dict:
        (name, _, change), seed = item
        cfg = target_cfg(
            'shift',
            base,
            s,
            study.data,
            seed,
            lr,
            sources[seed],
            osp.join(study.work, 'ablation', name, f'seed{seed}'),
        )
        change(cfg)
        result = study.train_run(cfg, 'accuracy/top1')
        result['test'] = study.test_run(cfg, result['checkpoint'])
        study.step(
            s.iters + study.test_units,
            f'ablation {name} seed {seed}: test {result["test"]:.1f}',
            result['seconds'],
            result['reused'],
        )
        return dict(summary(result), seed=seed)

    items = [(ablation, seed) for ablation in ablations for seed in s.seeds]
    runs = concurrently(one, items)
    for name, describe, _ in ablations:
        study.results['ablation'][name] = dict(
            describe=describe,
            lr=lr,
            runs=[run for (ablation, _), run in zip(items, runs) if ablation[0] == name],
        )


def run_efficiency(study, sources: Dict[int, str], lr: float) -> None:
    """QuadraNet from scratch on ``shift`` for ``scratch_factor`` times
    the adaptation budget at ``lr`` (its arm's choice), val curve only."""
    s = study.scale
    arm = ARM_BY_NAME['quadranet-scratch']
    iters = s.iters * s.scratch_factor

    def one(seed: int) -> dict:
        cfg = target_cfg(
            'shift',
            arm,
            s,
            study.data,
            seed,
            lr,
            sources[seed],
            osp.join(study.work, 'efficiency', f'seed{seed}'),
            iters=iters,
        )
        result = study.train_run(cfg, 'accuracy/top1')
        study.step(
            iters,
            f'QuadraNet from scratch x{s.scratch_factor}, seed {seed}: val {result["final"]:.1f}',
            result['seconds'],
            result['reused'],
        )
        return dict(summary(result), seed=seed)

    study.results['efficiency'] = dict(lr=lr, iters=iters, runs=concurrently(one, s.seeds))
