"""QuadraNetV2: any first-order backbone turned into a quadratic network.

``type='QuadraNetV2'`` in a config names :func:`build_quadranet_v2`, a
builder function registered in mmdet's and mmpretrain's ``MODELS``: it
builds the first-order backbone, adapts it in place and returns it, its class
now ``QuadraNetV2<module.Base>``, derived from the mixin :class:`QuadraNetV2`
and from ``Base``.
"""

import copy
import functools
from typing import List, Optional, Sequence, Type, Union

from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

from quadra_mm.adapters import inject_quadratic_adapters
from quadra_mm.registry import register_model

from .adapted_init import InitCfg, init_adapted_weights, split_init_cfg


class QuadraNetV2(BaseModule):
    """The mixin of every backbone :func:`build_quadranet_v2` adapted (use it
    for ``isinstance`` checks); not built directly.

    An adapted backbone keeps its own forward, ``train()`` (``frozen_stages``,
    ``norm_eval``) and parameter names, plus the adapter names; this mixin
    adds the initialisation (:meth:`init_weights`) and pickling through the
    first-order base class.

    Attributes:
        qnv2_pretrained: the ``Pretrained`` init cfg that
            :meth:`init_weights` loads, or None.
    """

    # The first-order class, set on each adapted class by adapted_class().
    _qnv2_base: Type[nn.Module]
    qnv2_pretrained: Optional[dict]

    def init_weights(self) -> None:
        """The backbone's own ``init_weights`` (its non-Pretrained init cfgs),
        then zero-output adapters, then ``qnv2_pretrained`` loaded strictly
        (:func:`~quadra_mm.models.adapted_init.init_adapted_weights`)."""
        if getattr(self, '_is_init', False):
            return super().init_weights()  # mmengine warns and skips
        init_adapted_weights(
            self,
            super().init_weights,
            self.qnv2_pretrained,
            owner=f'QuadraNetV2[{self._qnv2_base.__name__}]',
        )

    def __reduce__(self) -> tuple:
        # The adapted class is made when a model is built, so it cannot be
        # pickled by name; an instance refers to its first-order base class
        # instead (pickled by name), and the adapted class is made again from
        # it on load, in a fresh process too. deepcopy goes this way as well.
        return (_empty_adapted_instance, (self._qnv2_base,), self.__dict__)


@functools.lru_cache(maxsize=None)
def adapted_class(base: Type[nn.Module]) -> Type[QuadraNetV2]:
    """``QuadraNetV2<module.Base>``, the class of an adapted ``base``
    instance: one per first-order class (mmdet's and mmpretrain's ``ResNet``
    get two), the same on every call."""
    name = f'QuadraNetV2<{base.__module__}.{base.__qualname__}>'
    return type(
        name,
        (QuadraNetV2, base),
        {
            '__module__': __name__,
            '__qualname__': name,
            '__doc__': f'{base.__name__} adapted by QuadraNetV2.',
            '_qnv2_base': base,
        },
    )


def _empty_adapted_instance(base: Type[nn.Module]) -> QuadraNetV2:
    """An instance of the adapted ``base`` class with no state yet
    (unpickling, deepcopy); ``nn.Module.__setstate__`` then sets it."""
    cls = adapted_class(base)
    return cls.__new__(cls)


def build_quadranet_v2(
    backbone: dict,
    targets: Union[str, List[dict]],
    adapter: Optional[dict] = None,
    stages: Optional[Sequence[int]] = None,
    init_cfg: InitCfg = None,
) -> QuadraNetV2:
    """QuadraNet V2 quadratic adaptation of a first-order backbone
    (``type='QuadraNetV2'`` in a config).

    Every targeted layer ``L`` of the backbone becomes the quadratic neuron
    ``y = L(x) + alpha / r * U(phi(A(x), B(x)))`` with ``U = 0`` at
    initialisation (see :mod:`quadra_mm.ops`), so the adapted backbone first
    computes exactly what the first-order one computes.

    The backbone itself is returned, adapted in place, with no extra
    nesting level: its class becomes :func:`adapted_class` of its own. A
    wrapper module would prefix every parameter with another ``backbone.``;
    here first-order and QNv2 checkpoints are interchangeable up to adapter
    keys, and name-based tools (layer-wise lr decay, ``paramwise_cfg``
    custom keys, ``load_from``) keep working.

    Args:
        backbone: config of the first-order backbone, e.g.
            ``dict(type='mmpretrain.ConvNeXt', arch='tiny', ...)``. A
            ``Pretrained`` entry in its ``init_cfg`` moves to the adapted
            model (one given in ``init_cfg`` here takes precedence).
        targets: preset name (``'convnext'``, ``'resnet'``, ``'swin'``,
            ``'vit'``, ...) or a list of ``dict(type=<regex>, **adapter
            overrides)``.
        adapter: defaults for every target: ``rank``, ``kernel_size``,
            ``dilation``, ``interaction``, ``interaction_cfg`` (or their old
            names ``kernel``, ``kernel_cfg``), ``alpha``,
            ``depthwise``, ``memory_efficient``.
        stages: restrict the targets to these 0-based stages.
        init_cfg: as for any mm module; a ``dict(type='Pretrained',
            checkpoint=..., prefix='backbone.', allow_missing=[regexes],
            allow_unexpected=[regexes])`` entry loads a first-order or QNv2
            checkpoint strictly, apart from adapter keys and the keys these
            regexes allow.

    Raises:
        ValueError: ``backbone`` is not a config dict with a ``type``, or
            builds a backbone that is already adapted.
    """
    if not isinstance(backbone, dict) or 'type' not in backbone:
        raise ValueError(
            f'QuadraNetV2: `backbone` must be a config dict with a `type`, got {backbone!r}'
        )
    backbone = copy.deepcopy(dict(backbone))
    pretrained, other_init = split_init_cfg(init_cfg)
    inner_pretrained, inner_other = split_init_cfg(backbone.pop('init_cfg', None))
    if pretrained is None and inner_pretrained is not None:
        pretrained = inner_pretrained
    model = MODELS.build(dict(backbone, init_cfg=inner_other))
    if isinstance(model, QuadraNetV2):
        raise ValueError(
            'QuadraNetV2: `backbone` is already a QuadraNetV2; wrap the first-order backbone'
        )
    replaced = inject_quadratic_adapters(model, targets, stages=stages, **(adapter or {}))
    model.__class__ = adapted_class(type(model))
    if other_init is not None or not hasattr(model, 'init_cfg'):
        model.init_cfg = other_init
    if not hasattr(model, '_is_init'):  # a plain nn.Module backbone
        model._is_init = False
    model.qnv2_pretrained = copy.deepcopy(pretrained)
    print_log(
        f'QuadraNetV2: {len(replaced)} quadratic layers in {type(model).__name__}', logger='current'
    )
    return model


register_model(build_quadranet_v2, name='QuadraNetV2')
