"""Initialisation of a backbone holding quadratic layers: its own init, then
zero-output adapters, then a strictly loaded ``Pretrained`` checkpoint.

Shared by :func:`~quadra_mm.models.quadranet_v2.build_quadranet_v2` (an
adapted first-order backbone) and :class:`~quadra_mm.models.QuadraNet` (a
quadratic network trained from scratch).
"""

from typing import Callable, List, Optional, Tuple, Union

from torch import nn

from quadra_mm.adapters import reset_adapters

from .pretrained_checkpoint import load_adapted_checkpoint

InitCfg = Union[dict, List[dict], None]


def _is_pretrained(init_cfg) -> bool:
    return isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'


def split_init_cfg(init_cfg: InitCfg) -> Tuple[Optional[dict], InitCfg]:
    """``(the Pretrained entry or None, the other init cfgs or None)``.

    Raises:
        ValueError: ``init_cfg`` holds more than one ``Pretrained`` entry.
    """
    cfgs = init_cfg if isinstance(init_cfg, list) else ([init_cfg] if init_cfg else [])
    pretrained = [c for c in cfgs if _is_pretrained(c)]
    others = [c for c in cfgs if not _is_pretrained(c)]
    if len(pretrained) > 1:
        raise ValueError(f'init_cfg has {len(pretrained)} Pretrained entries; give one checkpoint')
    return (pretrained[0] if pretrained else None), (others or None)


def init_adapted_weights(
    module: nn.Module, own_init: Callable[[], None], pretrained: Optional[dict], owner: str
) -> None:
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
            owner=owner,
        )
