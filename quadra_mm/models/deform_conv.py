"""Quadratic adapters beside mmcv's deformable convolutions.

mmcv's ``DeformConv2dPack`` (``DCN``) and ``ModulatedDeformConv2dPack``
(``DCNv2``: mmdet's ``dcn=dict(type='DCNv2')`` ResNets) become the quadratic
neuron

    y = DCN(x) + s * U(phi(A(x), B(x)))

``L`` is the deformable conv itself: the quadratic layer is-a
``*DeformConv2dPack`` and keeps its ``weight``, ``bias`` and
``conv_offset.*`` at their state-dict keys. ``A`` and ``B`` are the plain
atrous convs of :class:`~quadra_mm.ops.QuadraticConvNeuron`, with ``L``'s
stride and output geometry: they read ``x`` on the regular grid, not at the
deformed sampling points (``docs/design.md``, "DCN adapters"), so the quadratic term,
its analytic backward, the fused inference form and its FLOP count are those
of the ``nn.Conv2d`` case. Importing this module registers both layer types
with the model surgery
(:func:`~quadra_mm.adapters.surgery.register_adaptable`).
"""

from typing import Any, Dict, Optional, Type, Union

import torch
from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2d, ModulatedDeformConv2dPack
from torch import Tensor, nn

from quadra_mm.adapters.surgery import register_adaptable
from quadra_mm.ops import QuadraticConvNeuron, QuadraticNeuron

__all__ = ['QuadraticDeformConv2dPack', 'QuadraticModulatedDeformConv2dPack', 'dcn_config']

_IntPair = Union[int, tuple]
DeformConvPack = Union[DeformConv2dPack, ModulatedDeformConv2dPack]
_GEOMETRY = (
    'in_channels',
    'out_channels',
    'kernel_size',
    'stride',
    'padding',
    'dilation',
    'groups',
    'deform_groups',
)


def dcn_config(dcn: DeformConvPack) -> Dict[str, Any]:
    """Constructor arguments of ``dcn``'s mmcv class that rebuild its
    geometry (without its values)."""
    config = {key: getattr(dcn, key) for key in _GEOMETRY}
    if isinstance(dcn, ModulatedDeformConv2d):
        config['bias'] = dcn.bias is not None
    else:  # DeformConv2d has no bias
        config['im2col_step'] = dcn.im2col_step
    return config


class _QuadraticDeformConv(QuadraticConvNeuron):
    """A deformable conv ``L`` (the mmcv class ``first_order``, the next base
    after :class:`~quadra_mm.ops.QuadraticNeuron` in the MRO) plus the
    low-rank atrous quadratic adapter of
    :class:`~quadra_mm.ops.QuadraticConvNeuron`.

    Args:
        *args, **kwargs: as ``first_order``; they describe ``L``.
        rank, adapter_kernel_size, adapter_dilation, interaction,
        interaction_cfg, alpha, depthwise, memory_efficient, name, kernel,
        kernel_cfg: as :class:`~quadra_mm.ops.QuadraticConv2d`.
        dtype: of the adapter (mmcv builds ``L`` in the default dtype).

    Raises:
        ValueError: as :class:`~quadra_mm.ops.QuadraticConv2d`.
    """

    first_order: Type[nn.Module]

    def __init__(
        self,
        *args: Any,
        rank: int = 8,
        adapter_kernel_size: _IntPair = 3,
        adapter_dilation: _IntPair = 2,
        interaction: Optional[str] = None,
        interaction_cfg: Optional[dict] = None,
        alpha: Optional[float] = None,
        depthwise: bool = False,
        memory_efficient: Optional[bool] = None,
        name: Optional[str] = None,
        dtype: Optional[torch.dtype] = None,
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)  # first_order's
        self._init_conv_adapter(
            self.in_channels,
            self.out_channels,
            rank=rank,
            adapter_kernel_size=adapter_kernel_size,
            adapter_dilation=adapter_dilation,
            interaction=interaction,
            interaction_cfg=interaction_cfg,
            alpha=alpha,
            depthwise=depthwise,
            memory_efficient=memory_efficient,
            name=name,
            dtype=dtype,
            kernel=kernel,
            kernel_cfg=kernel_cfg,
        )

    @classmethod
    def from_dcn(
        cls,
        dcn: DeformConvPack,
        rank: int = 8,
        kernel_size: _IntPair = 3,
        dilation: _IntPair = 2,
        interaction: Optional[str] = None,
        interaction_cfg: Optional[dict] = None,
        alpha: Optional[float] = None,
        depthwise: bool = False,
        memory_efficient: Optional[bool] = None,
        name: Optional[str] = None,
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
    ) -> '_QuadraticDeformConv':
        """Wrap an existing deformable conv, sharing (not copying) its
        weight, bias and offset conv; arguments as
        :meth:`~quadra_mm.ops.QuadraticConv2d.from_conv`."""
        # mmcv takes no device argument: under the meta default device the
        # throw-away offset conv and the adapter take no memory (mmcv's
        # legacy torch.Tensor weight ignores it, and is replaced below too).
        with torch.device('meta'):
            layer = cls(
                **dcn_config(dcn),
                rank=rank,
                adapter_kernel_size=kernel_size,
                adapter_dilation=dilation,
                interaction=interaction,
                interaction_cfg=interaction_cfg,
                alpha=alpha,
                depthwise=depthwise,
                memory_efficient=memory_efficient,
                name=name,
                dtype=dcn.weight.dtype,
                kernel=kernel,
                kernel_cfg=kernel_cfg,
            )
        layer.adopt_primary(dcn)
        layer.conv_offset = dcn.conv_offset
        return layer

    forward = QuadraticNeuron.forward
    # mmcv's DeformConv2d.__repr__ would hide the adapter's submodules.
    __repr__ = nn.Module.__repr__

    def _primary(self, x: Tensor) -> Tensor:
        return self.first_order.forward(self, x)

    def extra_repr(self) -> str:
        geometry = ', '.join(f'{k}={v}' for k, v in dcn_config(self).items())
        return f'{geometry}, {self._adapter_repr()}'


class QuadraticDeformConv2dPack(_QuadraticDeformConv, DeformConv2dPack):
    """mmcv's ``DeformConv2dPack`` (``DCN``) ``L`` plus a quadratic adapter
    (see :class:`_QuadraticDeformConv`)."""

    first_order = DeformConv2dPack


class QuadraticModulatedDeformConv2dPack(_QuadraticDeformConv, ModulatedDeformConv2dPack):
    """mmcv's ``ModulatedDeformConv2dPack`` (``DCNv2``) ``L`` plus a quadratic
    adapter (see :class:`_QuadraticDeformConv`)."""

    first_order = ModulatedDeformConv2dPack


register_adaptable(DeformConv2dPack, QuadraticDeformConv2dPack.from_dcn)
register_adaptable(ModulatedDeformConv2dPack, QuadraticModulatedDeformConv2dPack.from_dcn)
