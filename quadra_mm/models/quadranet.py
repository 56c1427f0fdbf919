"""QuadraNet: the from-scratch high-order backbone QuadraNet V2 compares to."""

from typing import List, Optional, Union

from mmpretrain.models.backbones import ConvNeXt

from quadra_mm.adapters import inject_quadratic_adapters
from quadra_mm.registry import register_model

from .adapted_init import init_adapted_weights, split_init_cfg


@register_model
class QuadraNet(ConvNeXt):
    """A ConvNeXt whose depthwise convs are quadratic neurons, trained from
    scratch.

    Each block's depthwise conv ``L`` computes
    ``L(x) + alpha / r * U(phi(A(x), B(x)))`` (:mod:`quadra_mm.ops`). This is
    the expensive baseline of the paper: a high-order network pre-trained
    from nothing, as opposed to ``QuadraNetV2``, which adapts a
    pretrained first-order network.

    Args:
        arch (str | dict): a ConvNeXt arch (``'atto'``, ``'tiny'``,
            ``'small'``, ``'base'``, ...) or an arch dict.
        quadratic (dict, optional): options of the quadratic term, as
            ``adapter`` of ``QuadraNetV2`` (``rank``, ``kernel_size``,
            ``dilation``, ``kernel``, ...).
        init_cfg (dict | list[dict], optional): a ``Pretrained`` entry loads
            a QuadraNet checkpoint strictly.
        **kwargs: the remaining :class:`mmpretrain.models.ConvNeXt` options.
    """

    def __init__(
        self,
        arch: Union[str, dict] = 'tiny',
        quadratic: Optional[dict] = None,
        init_cfg: Union[dict, List[dict], None] = None,
        **kwargs,
    ) -> None:
        pretrained, other_init = split_init_cfg(init_cfg)
        if other_init is not None:
            kwargs['init_cfg'] = other_init
        super().__init__(arch=arch, **kwargs)
        self.qnv2_pretrained = pretrained
        inject_quadratic_adapters(self, 'convnext', **(quadratic or {}))

    def init_weights(self) -> None:
        if self._is_init:
            return super().init_weights()  # mmengine warns and skips
        init_adapted_weights(self, super().init_weights, self.qnv2_pretrained, owner='QuadraNet')
