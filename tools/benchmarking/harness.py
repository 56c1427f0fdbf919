"""Timing harness: interleaved repeats, one clock, ratios within a repeat."""

import statistics
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

Measure = Union[float, Sequence[float]]


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def repeat_times(
    fns: Dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    repeats: int,
    clock: Callable[[], float],
) -> Dict[str, List[float]]:
    """Time of each ``fn`` in every repeat (after ``warmup`` untimed ones); every repeat
    runs all of them once, in turn."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for repeat in range(warmup + repeats):
        for name, fn in fns.items():
            sync(device)
            start = clock()
            fn()
            sync(device)
            if repeat >= warmup:
                times[name].append(clock() - start)
    return times


def ratios(value: Measure, base: Measure) -> List[float]:
    """``value / base``, per repeat for per-repeat times."""
    if isinstance(value, (int, float)):
        return [value / base]
    return [v / b for v, b in zip(value, base)]


def ratio(value: Measure, base: Measure, goal: Optional[float] = None) -> str:
    """``value / base`` as ``1.045×``, ✓/✗ against ``goal``. For per-repeat times, the
    median of the within-repeat ratios followed by their range: ``1.045× ✓ (1.02–1.07)``."""
    within = ratios(value, base)
    median = statistics.median(within)
    text = f'{median:.3f}×'
    if goal is not None:
        text += ' ✓' if median <= goal else ' ✗'
    if len(within) > 1:
        text += f' ({min(within):.2f}–{max(within):.2f})'
    return text


def ms(times: Sequence[float]) -> str:
    return f'{1e3 * statistics.median(times):.0f} ms'
