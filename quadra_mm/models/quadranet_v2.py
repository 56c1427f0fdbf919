"""QuadraNetV2: any first-order backbone turned into a quadratic network."""
import copy
from typing import (Callable, Dict, List, NamedTuple, Optional, Sequence, Type,
                    Union)

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from quadra_mm.adapters import inject_quadratic_adapters, reset_adapters
from quadra_mm.ops import QuadraticConv2d
from quadra_mm.registry import register_model
from .pretrained_checkpoint import load_adapted_checkpoint

_ADAPTED_CLASSES: Dict[Type[nn.Module], Type[nn.Module]] = {}


def _is_pretrained(init_cfg) -> bool:
    return isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'


def split_init_cfg(init_cfg) -> tuple:
    """(pretrained cfg or None, the other init cfgs or None)."""
    cfgs = init_cfg if isinstance(init_cfg, list) else (
        [init_cfg] if init_cfg else [])
    pretrained = [c for c in cfgs if _is_pretrained(c)]
    others = [c for c in cfgs if not _is_pretrained(c)]
    if len(pretrained) > 1:
        raise ValueError(f'init_cfg has {len(pretrained)} Pretrained entries; '
                         'give one checkpoint')
    return (pretrained[0] if pretrained else None), (others or None)


@register_model
class QuadraNetV2(BaseModule):
    """QuadraNet V2 quadratic adaptation of a first-order backbone.

    Every targeted layer ``L`` of the wrapped backbone becomes the quadratic
    neuron ``y = L(x) + alpha / r * U(phi(A(x), B(x)))`` with ``U = 0`` at
    initialisation (see :mod:`quadra_mm.ops`), so the adapted backbone first
    computes exactly what the first-order one computes.

    Building returns the wrapped backbone itself, adapted in place and given
    a class derived from both ``QuadraNetV2`` and its own class: its forward,
    ``train()`` (``frozen_stages``, ``norm_eval``) and parameter names are the
    backbone's own plus the adapter names, with no extra nesting level.
    First-order and QNv2 checkpoints are thus interchangeable up to adapter
    keys, and name-based tools (layer-wise lr decay, ``paramwise_cfg``
    custom keys, ``load_from``) keep working.

    Args:
        backbone (dict): config of the first-order backbone, e.g.
            ``dict(type='mmpretrain.ConvNeXt', arch='tiny', ...)``. A
            ``Pretrained`` entry in its ``init_cfg`` moves to this wrapper.
        targets (str | list[dict]): preset name (``'convnext'``,
            ``'resnet'``, ``'swin'``, ``'vit'``) or a list of
            ``dict(type=<regex>, **adapter overrides)``.
        adapter (dict, optional): defaults for every target: ``rank``,
            ``kernel_size``, ``dilation``, ``kernel``, ``kernel_cfg``,
            ``alpha``, ``depthwise``, ``memory_efficient``.
        stages (Sequence[int], optional): restrict the targets to these
            0-based stages.
        init_cfg (dict | list[dict], optional): as for any mm module; a
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.',
            allow_missing=[regexes], allow_unexpected=[regexes])`` entry
            loads a first-order or QNv2 checkpoint strictly, apart from
            adapter keys and the keys these regexes allow.
    """

    def __new__(cls, *args, **kwargs):
        if cls is not QuadraNetV2:
            # Adapted classes are allocated plainly (deepcopy, unpickling).
            return nn.Module.__new__(cls)
        return cls._build(*args, **kwargs)

    def __reduce_ex__(self, protocol: int) -> tuple:
        # The adapted class is made when a model is built, so it cannot be
        # pickled by name; an instance refers to its first-order base class
        # instead, and the adapted class is rebuilt from that on load.
        return (_new_adapted_instance, (self._qnv2_base, ), self.__dict__)

    def __init__(self, *args, **kwargs) -> None:
        # The instance was fully built by ``__new__``.
        pass

    @classmethod
    def _build(cls,
               backbone: dict,
               targets: Union[str, List[dict]],
               adapter: Optional[dict] = None,
               stages: Optional[Sequence[int]] = None,
               init_cfg: Union[dict, List[dict], None] = None) -> nn.Module:
        if not isinstance(backbone, dict) or 'type' not in backbone:
            raise ValueError('QuadraNetV2: `backbone` must be a config dict '
                             f'with a `type`, got {backbone!r}')
        backbone = copy.deepcopy(dict(backbone))
        pretrained, other_init = split_init_cfg(init_cfg)
        inner_pretrained, inner_other = split_init_cfg(
            backbone.pop('init_cfg', None))
        if pretrained is None and inner_pretrained is not None:
            pretrained = inner_pretrained
        model = MODELS.build(dict(backbone, init_cfg=inner_other))
        if isinstance(model, QuadraNetV2):
            raise ValueError('QuadraNetV2: `backbone` is already a '
                             'QuadraNetV2; wrap the first-order backbone')
        replaced = inject_quadratic_adapters(
            model, targets, stages=stages, **(adapter or {}))
        model.__class__ = _adapted_class(type(model))
        model.qnv2_norms_after = norms_after_quadratic_convs(model)
        if other_init is not None or not hasattr(model, 'init_cfg'):
            model.init_cfg = other_init
        if not hasattr(model, '_is_init'):  # a plain nn.Module backbone
            model._is_init = False
        model.qnv2_pretrained = copy.deepcopy(pretrained)
        print_log(f'QuadraNetV2: {len(replaced)} quadratic layers in '
                  f'{type(model).__name__}', logger='current')
        return model

    def init_weights(self) -> None:
        if getattr(self, '_is_init', False):
            return super().init_weights()  # mmengine warns and skips
        init_adapted_weights(
            self, super().init_weights, self.qnv2_pretrained,
            owner=f'QuadraNetV2[{self._qnv2_base.__name__}]')

    def forward(self, *args, **kwargs):
        complete_bn_fusion(self.qnv2_norms_after)
        return super().forward(*args, **kwargs)


def init_adapted_weights(module: nn.Module, own_init: Callable[[], None],
                         pretrained: Optional[dict], owner: str) -> None:
    """The module's own initialisation, then zero-output adapters, then the
    pretrained checkpoint (strictly, see :func:`load_adapted_checkpoint`).

    Args:
        module: a model holding quadratic layers.
        own_init: its first-order ``init_weights`` (without Pretrained).
        pretrained: a ``dict(type='Pretrained', checkpoint=..., prefix=...,
            allow_missing=[...], allow_unexpected=[...], map_location=...)``
            or None.
        owner: name used in messages.
    """
    own_init()
    # mm initialisers re-initialise every Conv2d/Linear they match,
    # the adapters' A, B and U included; U must be zero again.
    reset_adapters(module)
    if pretrained:
        load_adapted_checkpoint(
            module,
            pretrained['checkpoint'],
            prefix=pretrained.get('prefix'),
            map_location=pretrained.get('map_location', 'cpu'),
            allow_missing=pretrained.get('allow_missing', ()),
            allow_unexpected=pretrained.get('allow_unexpected', ()),
            owner=owner)


def _adapted_class(base: Type[nn.Module]) -> Type[nn.Module]:
    """``QuadraNetV2<module.Base>``: the class of an adapted ``base`` instance,
    one per base class (mmdet's and mmpretrain's ``ResNet`` get two).

    Instances pickle through :meth:`QuadraNetV2.__reduce_ex__`, which names
    ``base``, so a fresh process rebuilds this class on load."""
    if base not in _ADAPTED_CLASSES:
        name = f'QuadraNetV2<{base.__module__}.{base.__qualname__}>'
        _ADAPTED_CLASSES[base] = type(name, (QuadraNetV2, base), {
            '__module__': __name__,
            '__qualname__': name,
            '__doc__': f'{base.__name__} adapted by QuadraNetV2.',
            '_qnv2_base': base,
        })
    return _ADAPTED_CLASSES[base]


def _new_adapted_instance(base: Type[nn.Module]) -> nn.Module:
    """An empty instance of the adapted ``base`` class (unpickling, deepcopy);
    the state is set by ``nn.Module.__setstate__``."""
    cls = _adapted_class(base)
    return cls.__new__(cls)


class NormAfterConv(NamedTuple):
    """A BatchNorm ``parent.<norm_name>`` that mmcv's ``fuse_conv_bn`` would
    fold into the quadratic conv ``parent.<conv_name>`` (``layer_name`` in
    the model), and the primary weight and bias it would fold it into."""
    layer_name: str
    parent: nn.Module
    conv_name: str
    norm_name: str
    norm: nn.Module
    weight: nn.Parameter
    bias: Optional[nn.Parameter]


def norms_after_quadratic_convs(model: nn.Module) -> List[NormAfterConv]:
    """The quadratic convs of ``model`` that a BatchNorm follows, paired as
    mmcv's ``fuse_conv_bn`` pairs them: a BatchNorm child right after a
    ``Conv2d`` child of the same module, in registration order."""
    pairs = []

    def visit(module: nn.Module, prefix: str) -> None:
        last_conv = last_name = None
        for name, child in module.named_children():
            if isinstance(child, _BatchNorm):
                if isinstance(last_conv, QuadraticConv2d):
                    pairs.append(NormAfterConv(
                        prefix + last_name, module, last_name, name, child,
                        last_conv.weight, last_conv.bias))
                last_conv = None
            elif isinstance(child, nn.Conv2d):
                last_conv, last_name = child, name
            else:
                visit(child, f'{prefix}{name}.')

    visit(model, '')
    return pairs


@torch.no_grad()
def complete_bn_fusion(pairs: List[NormAfterConv]) -> None:
    """Apply a BatchNorm folded into a quadratic conv's primary term to its
    quadratic branch too.

    mmcv's ``fuse_conv_bn`` (mmdet ``benchmark.py --fuse-conv-bn``) folds
    ``BN(y) = f * (y - mean) + beta``, ``f = gamma / sqrt(var + eps)``, into
    the conv's ``weight`` and ``bias`` and puts an ``nn.Identity`` in the
    BN's place. For ``y = L(x) + s U(phi(A(x), B(x)))`` that leaves the branch
    un-normalised; ``BN(y) = L'(x) + s (f U)(phi(...))`` with ``L'`` the fused
    primary conv, so the rows of ``U`` are scaled by ``f`` here (also for a
    layer exported by :mod:`quadra_mm.deploy`, which keeps ``quad_u``). A
    pair is completed only when the BN's slot holds an ``nn.Identity`` and
    the conv's weight and bias are exactly mmcv's fusion of the recorded
    ones; any other removal of the BN is an error naming the layer.

    Args:
        pairs: from :func:`norms_after_quadratic_convs`; completed pairs
            are removed.
    """
    for index, pair in reversed(list(enumerate(pairs))):
        current = pair.parent._modules.get(pair.norm_name)
        if current is pair.norm:
            continue
        if isinstance(current, _BatchNorm):  # e.g. converted to SyncBN
            pairs[index] = pair._replace(norm=current)
            continue
        conv, norm = pair.parent._modules.get(pair.conv_name), pair.norm
        factor = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        bias = torch.zeros_like(norm.running_mean) if pair.bias is None \
            else pair.bias
        fused = (isinstance(current, nn.Identity)
                 and isinstance(conv, nn.Conv2d)
                 and conv.weight is not pair.weight
                 and conv.bias is not None
                 and torch.allclose(conv.weight, pair.weight *
                                    factor.reshape(-1, 1, 1, 1))
                 and torch.allclose(conv.bias, (bias - norm.running_mean) *
                                    factor + norm.bias))
        if not fused:
            raise RuntimeError(
                f'QuadraNetV2: the BatchNorm `{pair.norm_name}` after the '
                f'quadratic conv `{pair.layer_name}` was replaced by a '
                f'{type(current).__name__}, not folded into the conv as '
                'mmcv.cnn.fuse_conv_bn does; its quadratic branch cannot be '
                'normalised to match')
        u = getattr(conv, 'quad_u', None)  # none: exported without a branch
        if u is not None:
            u.weight.mul_(factor.reshape(-1, 1, 1, 1).to(u.weight.dtype))
        del pairs[index]
