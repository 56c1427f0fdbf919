"""Switching quadratic adapters off, and choosing which to switch off.

An adapter is off when its ``U`` is zero: the layer then computes ``L(x)`` exactly, and
its fused (inference) form skips the quadratic term, so the exported model's FLOPs and time
fall by exactly that adapter's share. The choice is greedy on an order given by the
caller (least important first): switching off adapter ``i`` saves its FLOPs ``f_i``
independently of the others, so the forward FLOPs ratio after switching off a set
``P`` is ``(F_0 + sum_{i not in P} f_i) / F_0`` with ``F_0`` the first-order FLOPs.
"""

import contextlib
import math
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import torch
from torch import nn

from ..ops import QuadraticNeuron
from .surgery import quadratic_layers

__all__ = ['switch_off', 'switched_off', 'prune_to_flops', 'prune_fraction', 'adapter_flops']


@torch.no_grad()
def switch_off(layers: Iterable[QuadraticNeuron]) -> None:
    """Set ``U = 0`` in each layer; a fused layer re-fuses, so it skips its quadratic term."""
    for layer in layers:
        layer.quad_u.weight.zero_()
        if layer.fused:
            layer.fuse()


@contextlib.contextmanager
def switched_off(layers: Iterable[QuadraticNeuron]) -> Iterator[None]:
    """Within the block the layers' adapters are off (:func:`switch_off`); on leaving
    it, also by an exception, each ``U`` is back bit for bit (and re-fused)."""
    layers = list(layers)
    saved = [layer.quad_u.weight.detach().clone() for layer in layers]
    switch_off(layers)
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, weight in zip(layers, saved):
                layer.quad_u.weight.copy_(weight)
                if layer.fused:
                    layer.fuse()


def adapter_flops(
    exported: nn.Module, count: Callable[[nn.Module], Dict[str, int]]
) -> Tuple[Dict[str, int], int, int]:
    """Forward FLOPs ``f_i`` of each adapter of an exported model, with the counter
    ``count`` (FLOPs per module name, ``''`` for the whole model: mmengine's
    ``FlopAnalyzer.by_module()`` on the caller's input).

    ``f_i`` is the layer's count with every adapter on minus with every adapter off: a
    fused layer with ``U = 0`` skips its quadratic term, so the all-off count is the first-order
    model's ``F_0``. The adapters are back as they were on return.

    Returns:
        ``(f_i per quadratic layer name, adapted model's FLOPs, F_0)``.
    """
    layers = dict(quadratic_layers(exported))
    on = count(exported)
    with switched_off(layers.values()):
        off = count(exported)
    return {name: on.get(name, 0) - off.get(name, 0) for name in layers}, on[''], off['']


def prune_to_flops(
    order: Sequence[str], adapter_flops: Dict[str, int], first_order_flops: int, max_ratio: float
) -> List[str]:
    """The shortest prefix of ``order`` whose switching off brings the forward FLOPs
    ratio ``(F_0 + sum of the remaining adapters' f_i) / F_0`` to at most ``max_ratio``.

    Args:
        order: adapter names, the first to switch off first (every adapter of the model).
        adapter_flops: ``f_i`` per name.
        first_order_flops: ``F_0``, the model's FLOPs with every adapter off.
        max_ratio: the budget, >= 1 (1 switches every adapter off).

    Raises:
        ValueError: ``max_ratio`` below 1 (no pruning reaches it).
    """
    if not max_ratio >= 1.0:
        raise ValueError(
            f'FLOPs budget {max_ratio} is below 1.0: even with every adapter '
            'off the model costs the first-order FLOPs'
        )
    total = first_order_flops + sum(adapter_flops[name] for name in order)
    pruned: List[str] = []
    for name in order:
        if total <= max_ratio * first_order_flops:
            break
        pruned.append(name)
        total -= adapter_flops[name]
    return pruned


def prune_fraction(order: Sequence[str], fraction: float) -> List[str]:
    """The first ``ceil(fraction * len(order))`` names of ``order``.

    Raises:
        ValueError: ``fraction`` outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f'fraction of adapters to prune must be in [0, 1], got {fraction}')
    # round() first: 0.3 * 10 is 3.0000000000000004, which must not become 4.
    return list(order[: math.ceil(round(fraction * len(order), 9))])
