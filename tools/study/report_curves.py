"""Validation curves over seeds: their mean and sample standard deviation per
step, the first step at which the mean reaches a target, and the target
QuadraNet from scratch has to reach on task (b)."""

import statistics
from typing import List, Optional, Tuple

import numpy as np

__all__ = ['curve_stats', 'first_reach', 'efficiency_target']


def curve_stats(runs: List[dict]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and sample std over ``runs`` of their val curves (std 0
    for one run); every run's curve has the same steps."""
    steps = [s for s, _ in runs[0]['curve']]
    values = np.array([[v for _, v in r['curve']] for r in runs], dtype=float)
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(steps))
    return np.array(steps), values.mean(axis=0), std


def first_reach(runs: List[dict], target: float) -> Optional[int]:
    """The first step at which the mean val curve of ``runs`` is at or above
    ``target``; None if it never is."""
    steps, mean, _ = curve_stats(runs)
    hits = [int(s) for s, m in zip(steps, mean) if m >= target]
    return hits[0] if hits else None


def efficiency_target(results: dict) -> float:
    """The final val top-1 of QNv2 stage training on task (b), mean over
    seeds: what QuadraNet from scratch has to reach."""
    return statistics.fmean(r['final'] for r in results['tasks']['shift']['qnv2-stages']['runs'])
