"""Registration into both mmdet's and mmpretrain's registries.

A config that sets ``custom_imports = dict(imports=['quadra_mm'])`` may run
under ``default_scope='mmdet'`` (detection) or ``'mmpretrain'``
(classification); ``type='QuadraNetV2'`` must resolve in both. Each class is
registered in each scope's registry under its own name.
"""
from typing import Callable, Type, TypeVar

from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

T = TypeVar('T', bound=Type)


def _register_in(*registries) -> Callable[[T], T]:

    def register(cls: T) -> T:
        for registry in registries:
            registry.register_module(module=cls)
        return cls

    return register


register_model = _register_in(MMDET_MODELS, MMPRETRAIN_MODELS)
register_hook = _register_in(MMDET_HOOKS, MMPRETRAIN_HOOKS)
