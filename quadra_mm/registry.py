"""Registration into both mmdet's and mmpretrain's registries.

A config that sets ``custom_imports = dict(imports=['quadra_mm'])`` may run
under ``default_scope='mmdet'`` (detection) or ``'mmpretrain'``
(classification); ``type='QuadraNetV2'`` must resolve in both. Each class or
builder function is registered in each scope's registry, under its own name
or the one given.
"""
from typing import Callable, Optional, TypeVar

from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

T = TypeVar('T', bound=Callable)


def _register_in(*registries) -> Callable[..., T]:

    def register(module: T, name: Optional[str] = None) -> T:
        """Register ``module`` (a class, or a function that builds the
        object from the config's keyword arguments) as ``name``, by default
        its ``__name__``; returns it, so it also serves as a decorator."""
        for registry in registries:
            registry.register_module(name=name, module=module)
        return module

    return register


register_model = _register_in(MMDET_MODELS, MMPRETRAIN_MODELS)
register_hook = _register_in(MMDET_HOOKS, MMPRETRAIN_HOOKS)
