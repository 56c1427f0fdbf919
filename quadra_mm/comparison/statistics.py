"""Means and spreads over seeds, the paired difference of two arms and the
verdict rule every comparison states (the tool's report and the study's).

The rule: with ``d_s`` the per-seed differences ``arm - control`` (the same
seed: the same data order, initialisation and pretrained start for both),
``mean(d)`` and its standard error ``SE = std(d) / sqrt(n)``:

* **supported** if ``mean(d) > 2 SE`` (and ``> 0``);
* **not supported** if ``mean(d) <= 0`` ("the control is clearly better"
  when ``mean(d) < -2 SE``);
* **inconclusive at this scale** otherwise.

A screen for a few seeds, not a significance test. Higher is better.
"""

import math
import statistics
from typing import Dict, List, Sequence, Tuple

__all__ = ['mean_std', 'fmt', 'paired_difference', 'verdict_kind', 'verdict', 'VERDICT_RULE']

VERDICT_RULE = (
    'paired by seed, d = arm - reference: **supported** if mean(d) > 2 SE, '
    '**not supported** if mean(d) <= 0 ("clearly" if mean(d) < -2 SE), '
    '**inconclusive at this scale** otherwise (SE = std(d) / sqrt(n); a screen '
    'for a few seeds, not a significance test; higher is better)'
)


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """The mean and sample std (nan for one value) of ``values``."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), std


def fmt(values: Sequence[float], digits: int = 1) -> str:
    """``mean ± std`` of ``values``."""
    mean, std = mean_std(values)
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


def paired_difference(runs: List[dict], control: List[dict], key: str = 'test') -> Dict[str, float]:
    """``mean``, standard error ``se`` and count ``n`` of the per-seed
    differences ``run[key] - control[key]`` over the seeds both have (each
    run a dict with ``seed`` and ``key``); ``se`` is nan for one pair."""
    by_seed = {r['seed']: r[key] for r in control}
    diffs = [r[key] - by_seed[r['seed']] for r in runs if r['seed'] in by_seed]
    if not diffs:
        raise ValueError(
            f'no seed in common: {[r["seed"] for r in runs]} vs {[r["seed"] for r in control]}'
        )
    mean, std = mean_std(diffs)
    se = std / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    return dict(mean=mean, se=se, n=len(diffs))


def verdict_kind(d: Dict[str, float]) -> str:
    """The rule's outcome for a paired difference ``d``
    (:func:`paired_difference`): ``'supported'``, ``'clearly worse'`` (the
    control clearly better), ``'no gain'`` (within noise) or
    ``'inconclusive'``; the last two are the differences within 2 SE of 0."""
    mean, se = d['mean'], d['se']
    if mean > 2 * se and mean > 0:
        return 'supported'
    if mean < -2 * se:
        return 'clearly worse'
    return 'no gain' if mean <= 0 else 'inconclusive'


_VERDICT_TEXT = {
    'supported': '**supported**',
    'clearly worse': '**not supported** (the control is clearly better)',
    'no gain': '**not supported** (no gain, within noise)',
    'inconclusive': '**inconclusive at this scale**',
}


def verdict(runs: List[dict], control: List[dict], key: str = 'test', digits: int = 2) -> str:
    """Whether ``runs`` beat ``control`` on ``key``, seed by seed, by the
    rule of this module (:data:`VERDICT_RULE`), with the paired difference:
    e.g. ``**supported**: +1.20 (SE 0.30, n=3)``."""
    d = paired_difference(runs, control, key)
    text = f'{d["mean"]:+.{digits}f} (SE {d["se"]:.{digits}f}, n={d["n"]})'
    return f'{_VERDICT_TEXT[verdict_kind(d)]}: {text}'
