"""Memory-efficient backward for the quadratic branch, and the shared autocast cast.

Plain autograd through ``s * U(phi(A(x), B(x)))`` keeps the 2r-channel projection
and the r-channel interaction at the layer's output resolution alive until backward.
:class:`QuadraticBranch` keeps only ``x`` (which the primary term ``L`` saves anyway)
and the small adapter weights, recomputes the projections in backward and applies the
branch's gradient formulas directly (no autograd re-entry, no ``torch.autograd.grad``),
so the backward costs only its kernels and ``torch.compile`` traces it without a
graph break.
"""
from typing import Optional, Protocol, Tuple

import torch
from torch import Tensor

__all__ = ['AnalyticBranch', 'QuadraticBranch', 'autocast_input']


class AnalyticBranch(Protocol):
    """What :class:`QuadraticBranch` needs of a layer: the branch and its gradients."""

    def _branch_fn(self, x: Tensor, w_a: Tensor, w_b: Tensor, w_u: Tensor,
                   out: Optional[Tensor] = None) -> Tensor:
        """``s * U(phi(A(x), B(x)))`` with the given adapter weights, added into ``out`` in
        place when given."""

    def _branch_backward(self, grad: Tensor, x: Tensor, w_a: Tensor, w_b: Tensor, w_u: Tensor,
                         needs_grad: Tuple[bool, ...]) -> Tuple[Optional[Tensor], ...]:
        """Gradients with respect to ``(x, w_a, w_b, w_u)``; ``None`` where not needed."""


class QuadraticBranch(torch.autograd.Function):
    """``layer._branch_fn(x, w_a, w_b, w_u, out)``, saving only ``x`` and the weights;
    backward is ``layer._branch_backward``, which recomputes ``A(x)``, ``B(x)`` and ``phi``.

    With ``out`` (the primary output ``L(x)``) the branch is added into it in place and
    ``out`` is returned (marked dirty); its gradient passes through unchanged.

    The autocast state of the forward (device type, enabled, dtype) is recorded and
    re-entered in backward: backward may run on another thread (CUDA) or outside the
    caller's autocast region, and the recompute must reproduce the forward's casts.
    """

    @staticmethod
    def forward(ctx, layer: AnalyticBranch, out: Optional[Tensor], x: Tensor, w_a: Tensor,
                w_b: Tensor, w_u: Tensor) -> Tensor:
        device_type = x.device.type
        ctx.layer = layer
        ctx.autocast_state = (device_type, torch.is_autocast_enabled(device_type),
                              torch.get_autocast_dtype(device_type))
        ctx.save_for_backward(x, w_a, w_b, w_u)
        if out is not None:
            ctx.mark_dirty(out)
        return layer._branch_fn(x, w_a, w_b, w_u, out)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        device_type, enabled, dtype = ctx.autocast_state
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            grads = ctx.layer._branch_backward(grad_out, *ctx.saved_tensors,
                                               ctx.needs_input_grad[2:])
        return (None, grad_out if ctx.needs_input_grad[1] else None, *grads)


def autocast_input(x: Tensor) -> Tensor:
    """Cast ``x`` once to the autocast dtype of its device, when autocast is on.

    Autocast casts each op's inputs separately: the primary conv and the branch would
    each save their own low-precision copy of ``x``. Casting once here and feeding the
    result to both leaves one copy. Like autocast itself, float64 is left alone.
    """
    device_type = x.device.type
    if (x.is_floating_point() and x.dtype != torch.float64
            and torch.is_autocast_enabled(device_type)):
        return x.to(torch.get_autocast_dtype(device_type))
    return x
