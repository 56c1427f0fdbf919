"""Memory-efficient backward for the quadratic branch, and the shared autocast cast.

Plain autograd through ``s * U(phi(A(x), B(x)))`` keeps the 2r-channel projection
and the r-channel interaction at the layer's output resolution alive until backward.
:func:`recomputed_branch` keeps only ``x`` (which the primary term ``L`` saves anyway)
and the small adapter weights, and recomputes the branch in backward.
"""
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['RecomputedBranch', 'recomputed_branch', 'autocast_input']

BranchFn = Callable[..., Tensor]


class RecomputedBranch(torch.autograd.Function):
    """``fn(x, *weights)`` that saves only its inputs and recomputes ``fn`` in backward.

    The autocast state of the forward (device type, enabled, dtype) is recorded and
    re-entered in backward: backward may run on another thread (CUDA) or outside the
    caller's autocast region, and the recompute must reproduce the forward's casts.
    """

    @staticmethod
    def forward(ctx, fn: BranchFn, x: Tensor, *weights: Tensor) -> Tensor:
        device_type = x.device.type
        ctx.fn = fn
        ctx.autocast_state = (device_type, torch.is_autocast_enabled(device_type),
                              torch.get_autocast_dtype(device_type))
        ctx.save_for_backward(x, *weights)
        return fn(x, *weights)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        device_type, enabled, dtype = ctx.autocast_state
        needs_grad = ctx.needs_input_grad[1:]
        inputs = [t.detach().requires_grad_(need) for t, need in zip(ctx.saved_tensors, needs_grad)]
        with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            out = ctx.fn(*inputs)
        grads = iter(torch.autograd.grad(out, [t for t in inputs if t.requires_grad], grad_out))
        return (None, *(next(grads) if need else None for need in needs_grad))


def recomputed_branch(fn: BranchFn, x: Tensor, *weights: Tensor) -> Tensor:
    """Apply ``fn(x, *weights)`` through :class:`RecomputedBranch`.

    Args:
        fn: pure function of its tensor arguments (the branch math).
        x: layer input; saved for backward by reference, so it costs no memory when
            the primary term already saves the same tensor.
        *weights: adapter weights (parameters; saving them copies nothing).
    """
    return RecomputedBranch.apply(fn, x, *weights)


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
