"""Inference forms of the quadratic layers.

    y = L(x) + U'(phi(split(AB(x))))

``AB`` is one conv/linear with the ``2r`` outputs of ``A`` and ``B`` (its weight fused
once, at export), and ``U' = s * U`` has the scale folded in. ``L`` keeps the original
weight and bias Parameters at their original keys. On CUDA, without autograd and
outside ``torch.compile``, ``phi``, ``U'`` and the add run as one Triton kernel
(:func:`~quadra_mm.deploy.triton_kernels.fused_branch_add_`); elsewhere in eager ops.
"""
from typing import Optional, Union

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from ..ops import (InteractionKernel, QuadraticConv2d, QuadraticLinear, QuadraticNeuron,
                   fuse_projections, layer_config, pointwise_conv, share_parameters,
                   split_projections)
from .triton_kernels import fused_branch_add_

__all__ = ['FusedQuadraticNeuron', 'FusedQuadraticConv2d', 'FusedQuadraticLinear', 'to_inference_module']


def _frozen(module: nn.Module, weight: Tensor) -> nn.Module:
    module.weight = nn.Parameter(weight.detach(), requires_grad=False)
    return module


class FusedQuadraticNeuron(nn.Module):
    """Common base of the inference layers (``isinstance`` checks).

    Attributes:
        quad_ab: fused ``A``/``B`` projection, ``2r`` outputs.
        quad_u: ``U`` with the scale folded in.
        interaction: the kernel ``phi``.
        interleave: ``quad_ab``'s outputs are interleaved per group (depthwise variant)
            rather than ``[A; B]``.
    """

    _channel_dim: int

    def _init_branch(self, quad_ab: nn.Module, quad_u: nn.Module, interaction: InteractionKernel,
                     interleave: bool) -> None:
        self.quad_ab, self.quad_u = quad_ab, quad_u
        self.interaction = interaction
        self.interleave = interleave

    def _primary(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _project(self, h: Tensor, out: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError

    def branch(self, x: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """``s * U(phi(A(x), B(x)))``, added into ``out`` in place when given."""
        a, b = split_projections(self.quad_ab(x), self._channel_dim, self.interleave)
        return self._project(self.interaction(a, b), out)

    def _fused_kernel_applies(self, primary: Tensor) -> bool:
        return (primary.is_cuda and not self.interleave and not torch.is_grad_enabled()
                and not torch.compiler.is_compiling())

    def forward(self, x: Tensor) -> Tensor:
        primary = self._primary(x)
        if torch.jit.is_tracing():  # mmengine's FLOP count has no handle for baddbmm_
            return primary.add_(self.branch(x))
        if not self._fused_kernel_applies(primary):
            return self.branch(x, out=primary)
        ab = self.quad_ab(x)
        if self._channel_dim == -1:  # linear: tokens as rows
            fused_branch_add_(primary.view(-1, primary.shape[-1]), ab.reshape(-1, ab.shape[-1]),
                              self.quad_u.weight, self.interaction)
        else:
            fused_branch_add_(primary, ab, self.quad_u.weight, self.interaction)
        return primary


class FusedQuadraticConv2d(nn.Conv2d, FusedQuadraticNeuron):
    """Inference form of :class:`~quadra_mm.ops.QuadraticConv2d` (build it with
    :meth:`from_quadratic`)."""

    _channel_dim = 1

    def __init__(self, *args, quad_ab: nn.Conv2d, quad_u: nn.Conv2d,
                 interaction: InteractionKernel, interleave: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_branch(quad_ab, quad_u, interaction, interleave)

    @classmethod
    def from_quadratic(cls, layer: QuadraticConv2d) -> 'FusedQuadraticConv2d':
        """Fuse ``layer``'s adapter; the primary weight and bias are shared, not copied."""
        a, u = layer.quad_a, layer.quad_u
        ab = nn.Conv2d(**{**layer_config(a), 'out_channels': 2 * a.out_channels}, device='meta')
        fused = cls(**layer_config(layer), device='meta',
                    quad_ab=_frozen(ab, fuse_projections(a.weight, layer.quad_b.weight, layer.depthwise)),
                    quad_u=_frozen(nn.Conv2d(**layer_config(u), device='meta'), u.weight * layer.scale),
                    interaction=layer.interaction, interleave=layer.depthwise)
        return share_parameters(fused, layer)

    forward = FusedQuadraticNeuron.forward

    def _primary(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight, self.bias)

    def _project(self, h: Tensor, out: Optional[Tensor] = None) -> Tensor:
        return pointwise_conv(h, self.quad_u.weight, self.quad_u.groups, out)


class FusedQuadraticLinear(nn.Linear, FusedQuadraticNeuron):
    """Inference form of :class:`~quadra_mm.ops.QuadraticLinear` (build it with
    :meth:`from_quadratic`)."""

    _channel_dim = -1

    def __init__(self, *args, quad_ab: nn.Linear, quad_u: nn.Linear,
                 interaction: InteractionKernel, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_branch(quad_ab, quad_u, interaction, interleave=False)

    @classmethod
    def from_quadratic(cls, layer: QuadraticLinear) -> 'FusedQuadraticLinear':
        """Fuse ``layer``'s adapter; the primary weight and bias are shared, not copied."""
        a, u = layer.quad_a, layer.quad_u
        ab = nn.Linear(**{**layer_config(a), 'out_features': 2 * a.out_features}, device='meta')
        fused = cls(**layer_config(layer), device='meta',
                    quad_ab=_frozen(ab, fuse_projections(a.weight, layer.quad_b.weight, False)),
                    quad_u=_frozen(nn.Linear(**layer_config(u), device='meta'), u.weight * layer.scale),
                    interaction=layer.interaction)
        return share_parameters(fused, layer)

    forward = FusedQuadraticNeuron.forward

    def _primary(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def _project(self, h: Tensor, out: Optional[Tensor] = None) -> Tensor:
        branch = self.quad_u(h)
        return branch if out is None else out.add_(branch)


@torch.no_grad()
def to_inference_module(layer: QuadraticNeuron) -> Union[nn.Conv2d, nn.Linear]:
    """Inference module computing what ``layer`` computes.

    A layer whose ``U`` is exactly zero contributes nothing: it becomes a plain
    ``nn.Conv2d`` / ``nn.Linear`` sharing its weight and bias. Otherwise a
    :class:`FusedQuadraticConv2d` / :class:`FusedQuadraticLinear`.
    """
    conv = isinstance(layer, nn.Conv2d)
    if not layer.quad_u.weight.any():
        plain = nn.Conv2d if conv else nn.Linear
        return share_parameters(plain(**layer_config(layer), device='meta'), layer)
    return (FusedQuadraticConv2d if conv else FusedQuadraticLinear).from_quadratic(layer)
