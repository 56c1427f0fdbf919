"""Analytic backward for the quadratic term, and the shared autocast cast.

Plain autograd through ``s * U(phi(A(x), B(x)))`` keeps the 2r-channel projection,
the r-channel interaction and every intermediate of the elementwise tail alive until
backward. :class:`QuadraticTerm` applies the quadratic term's gradient formulas directly (no
autograd re-entry, no ``torch.autograd.grad``), so the backward costs only its kernels
and ``torch.compile`` traces it without a graph break. It keeps ``x`` and the small
adapter weights, and either

* recomputes the projections ``A(x)``, ``B(x)`` in backward (``recompute=True``): the
  right trade when ``L``'s weight trains, since ``L``'s backward then runs its own
  weight gradient over ``x`` and the recompute adds a small share to a heavy step; or
* also keeps the projections (``2r`` channels, divided by the range scale) and the
  range scale (``recompute=False``): the right trade when ``L`` is frozen, where ``L``'s
  backward is only its input gradient and the recompute would be a large share of the
  step.

Either way ``x`` stays: ``A`` and ``B``'s weight gradients need it. A conv ``L`` saves
that same tensor whenever its input or its weight needs a gradient (a linear only when
its weight does), so there it costs no memory of its own.
"""

from typing import Optional, Protocol, Tuple

import torch
from torch import Tensor

__all__ = ['AnalyticQuadraticTerm', 'QuadraticTerm', 'autocast_input']

Projection = Tuple[Tensor, Optional[Tensor]]


class AnalyticQuadraticTerm(Protocol):
    """What :class:`QuadraticTerm` needs of a layer: the quadratic term and its gradients."""

    def _quadratic_term_with_projection(
        self, x: Tensor, w_a: Tensor, w_b: Tensor, w_u: Tensor, out: Optional[Tensor] = None
    ) -> Tuple[Tensor, Projection]:
        """``(s * U(phi(A(x), B(x))), (AB(x) / c, c))``: the quadratic term with the given adapter
        weights (added into ``out`` in place when given) and its range-scaled fused
        projection with the range scale ``c`` (``None`` without a range limit)."""

    def _quadratic_term_backward(
        self,
        grad: Tensor,
        x: Tensor,
        w_a: Tensor,
        w_b: Tensor,
        w_u: Tensor,
        needs_grad: Tuple[bool, ...],
        projection: Optional[Projection] = None,
    ) -> Tuple[Optional[Tensor], ...]:
        """Gradients with respect to ``(x, w_a, w_b, w_u)``; ``None`` where not needed.
        ``projection``: the forward's, or ``None`` to recompute it from ``x``."""


class QuadraticTerm(torch.autograd.Function):
    """``layer._quadratic_term_with_projection(x, w_a, w_b, w_u, out)[0]`` with the analytic
    backward ``layer._quadratic_term_backward``; saves ``x`` and the weights, and the projection
    unless ``recompute`` (see the module docstring).

    With ``out`` (the primary output ``L(x)``) the quadratic term is added into it in place and
    ``out`` is returned (marked dirty); its gradient passes through unchanged.

    The autocast state of the forward (device type, enabled, dtype) is recorded and
    re-entered in backward: backward may run on another thread (CUDA) or outside the
    caller's autocast region, and the recompute must reproduce the forward's casts.
    """

    @staticmethod
    def forward(
        ctx,
        layer: AnalyticQuadraticTerm,
        out: Optional[Tensor],
        x: Tensor,
        w_a: Tensor,
        w_b: Tensor,
        w_u: Tensor,
        recompute: bool = True,
    ) -> Tensor:
        device_type = x.device.type
        ctx.layer = layer
        ctx.recompute = recompute
        ctx.autocast_state = (
            device_type,
            torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type),
        )
        if out is not None:
            ctx.mark_dirty(out)
        result, (ab, scale) = layer._quadratic_term_with_projection(x, w_a, w_b, w_u, out)
        if recompute:
            ctx.save_for_backward(x, w_a, w_b, w_u)
        else:
            ctx.save_for_backward(x, w_a, w_b, w_u, ab, scale)
        return result

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        device_type, enabled, dtype = ctx.autocast_state
        x, w_a, w_b, w_u, *projection = ctx.saved_tensors
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            grads = ctx.layer._quadratic_term_backward(
                grad_out,
                x,
                w_a,
                w_b,
                w_u,
                ctx.needs_input_grad[2:6],
                None if ctx.recompute else tuple(projection),
            )
        return (None, grad_out if ctx.needs_input_grad[1] else None, *grads, None)


def autocast_input(x: Tensor) -> Tensor:
    """Cast ``x`` once to the autocast dtype of its device, when autocast is on.

    Autocast casts each op's inputs separately: the primary conv and the quadratic term would
    each save their own low-precision copy of ``x``. Casting once here and feeding the
    result to both leaves one copy. Like autocast itself, float64 is left alone.
    """
    device_type = x.device.type
    if (
        x.is_floating_point()
        and x.dtype != torch.float64
        and torch.is_autocast_enabled(device_type)
    ):
        return x.to(torch.get_autocast_dtype(device_type))
    return x
