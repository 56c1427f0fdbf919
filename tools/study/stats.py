"""Means and spreads over seeds, as every table of the study shows them."""
import math
import statistics
from typing import Sequence, Tuple


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """The mean and sample std (nan for one value) of ``values``."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), std


def fmt(values: Sequence[float], digits: int = 1) -> str:
    """``mean ± std`` of ``values``."""
    mean, std = mean_std(values)
    return f'{mean:.{digits}f} ± {std:.{digits}f}'
