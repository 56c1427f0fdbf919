"""mmcv's ``fuse_conv_bn`` folding a BatchNorm into the whole quadratic conv.

``mmcv.cnn.fuse_conv_bn`` (mmdet ``benchmark.py --fuse-conv-bn``, or called
on a model directly) walks a model and, for each BatchNorm that
follows a ``Conv2d`` in the same parent, calls mmcv's ``_fuse_conv_bn(conv,
bn)``: it folds ``BN(y) = f * (y - mean) + beta``, ``f = gamma / sqrt(var +
eps)``, into the conv's ``weight`` and ``bias``, and puts an ``nn.Identity``
in the BN's place. For a quadratic conv ``y = L(x) + s U(phi(A(x), B(x)))``
that normalises ``L`` alone; ``BN(y) = L'(x) + s (f U)(phi(...))`` with
``L'`` the folded primary conv, so the rows of ``U`` must be scaled by ``f``
as well. :func:`install` wraps mmcv's ``_fuse_conv_bn`` (which
``fuse_conv_bn`` looks up at each call) so that it does so: the repair
happens once, when the pair is fused, and nothing runs in ``forward``.
"""

import functools
import importlib
from typing import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from quadra_mm.ops import QuadraticConv2d

__all__ = ['fold_norm_into_adapter', 'install']

_MMCV_FUSION = 'mmcv.cnn.utils.fuse_conv_bn'


@torch.no_grad()
def fold_norm_into_adapter(conv: QuadraticConv2d, norm: _BatchNorm) -> None:
    """Scale the rows of ``conv``'s ``U`` by ``f = gamma / sqrt(var +
    eps)`` of ``norm``, the BatchNorm about to be folded into its primary
    weight and bias; a fused layer (inference form) recomputes its ``s *
    U``."""
    factor = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    u = conv.quad_u.weight
    u.mul_(factor.reshape(-1, 1, 1, 1).to(u.dtype))
    if conv.fused:
        conv.fuse()


def _folding_into_adapters(
    fold: Callable[[nn.Module, nn.Module], nn.Module],
) -> Callable[[nn.Module, nn.Module], nn.Module]:

    @functools.wraps(fold)
    def fold_conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
        if isinstance(conv, QuadraticConv2d):
            fold_norm_into_adapter(conv, bn)
        return fold(conv, bn)

    fold_conv_bn.__quadra_mm_folds_adapters__ = True
    return fold_conv_bn


def install() -> None:
    """Make mmcv's conv-BN fusion fold the BN into quadratic terms too
    (idempotent)."""
    fusion = importlib.import_module(_MMCV_FUSION)
    if not getattr(fusion._fuse_conv_bn, '__quadra_mm_folds_adapters__', False):
        fusion._fuse_conv_bn = _folding_into_adapters(fusion._fuse_conv_bn)
