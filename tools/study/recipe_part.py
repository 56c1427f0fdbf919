"""Part 3b on task (b): which recipe that trains few parameters, at the study's
budget and at :data:`~.arms.BUDGET_FACTOR` times it. :func:`run_budget` runs
the arms of :data:`~.arms.RECIPE_ARMS` at the longer budget (each with its own
lr sweep); :func:`extend_close_pairs` gives the arms of every pair of
:data:`~.arms.RECIPE_PAIRS` whose verdict is within two standard errors the
scale's extra seeds, at the lr the arm chose, and records which pairs they were."""

from typing import Dict, List, Tuple

from quadra_mm.comparison.executor import concurrently
from quadra_mm.comparison.statistics import paired_difference, verdict_kind

from .arms import ARM_BY_NAME, BUDGET_FACTOR, RECIPE_ARMS, RECIPE_PAIRS
from .configs import test_len

__all__ = ['run_budget', 'close_pairs', 'extend_close_pairs', 'budget_units']


def budget_units(study) -> float:
    """Progress units of :func:`run_budget` (its sweeps, seeds and tests)."""
    s = study.scale
    iters = BUDGET_FACTOR * s.iters
    per_arm = (len(s.lrs) + len(s.seeds) - 1) * iters + len(s.seeds) * study.test_units
    return len(RECIPE_ARMS) * per_arm


def run_budget(study, sources: Dict[int, str]) -> dict:
    """The arms of :data:`~.arms.RECIPE_ARMS` on task (b) at ``BUDGET_FACTOR``
    times the iterations, each swept and seeded as at the study's budget."""
    iters = BUDGET_FACTOR * study.scale.iters
    where = f'shift-{BUDGET_FACTOR}x'
    outs = concurrently(
        lambda name: study.arm('shift', ARM_BY_NAME[name], sources, iters, where), RECIPE_ARMS
    )
    return dict(iters=iters, factor=BUDGET_FACTOR, arms=dict(zip(RECIPE_ARMS, outs)))


def close_pairs(arms: Dict[str, dict]) -> List[Tuple[str, str]]:
    """The pairs ``(arm, control)`` of :data:`~.arms.RECIPE_PAIRS` whose
    paired test difference is within two standard errors of 0."""
    return [
        (arm, control)
        for arm, control in RECIPE_PAIRS
        if verdict_kind(paired_difference(arms[arm]['runs'], arms[control]['runs']))
        in ('no gain', 'inconclusive')
    ]


def extend_close_pairs(
    study, arms: Dict[str, dict], sources: Dict[int, str], iters: int, where: str
) -> dict:
    """The scale's extra seeds for both arms of every close pair of ``arms``
    (the runs of ``where`` at ``iters`` iterations, extended in place);
    returns which pairs were close at the first seeds and which arms grew."""
    s = study.scale
    seeds = [seed for seed in s.extra_seeds if seed not in s.seeds]
    close = close_pairs(arms)
    grown = [name for name in RECIPE_ARMS if any(name in pair for pair in close)]
    study.progress.add(len(grown) * len(seeds) * (iters + study.test_units))
    concurrently(
        lambda name: study.more_seeds(
            f'{where} / {name}',
            arms[name],
            iters,
            study.target('shift', ARM_BY_NAME[name], sources, iters, where),
            seeds,
            test_len(s),
        ),
        grown,
    )
    return dict(close=[list(pair) for pair in close], extended=grown, seeds=seeds)
