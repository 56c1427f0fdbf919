"""Registration into both mmdet's and mmpretrain's registries.

A config that sets ``custom_imports = dict(imports=['quadra_mm'])`` may run
under ``default_scope='mmdet'`` (detection) or ``'mmpretrain'``
(classification); ``type='QuadraNetV2'`` must resolve in both. Each class or
builder function is registered in each scope's registry, under its own name
or the one given.

Where mmpretrain cannot be imported (mmpretrain 1.2.0 beside a recent
``transformers``, which most ML environments have), everything is registered
in mmdet's registries only, with one warning that names the cause and the
fix: detection configs keep working.
"""

import importlib.util
import warnings
from typing import Callable, Optional, TypeVar

from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import MODELS as MMDET_MODELS

T = TypeVar('T', bound=Callable)


def _mmpretrain_import_error() -> Optional[Exception]:
    """``None`` if ``mmpretrain.models`` imports, else the error it raised
    (beside ``transformers`` mmpretrain 1.2.0 raises a ``TypeError`` there)."""
    try:
        import mmpretrain.models  # noqa: F401
    except Exception as error:  # noqa: BLE001  (any failure: register in mmdet only)
        return error
    return None


def _warn_mmdet_only(error: Exception) -> None:
    if importlib.util.find_spec('transformers') is not None:
        fix = (
            'mmpretrain 1.2.0 does not import beside the installed `transformers` (its '
            'BLIP module); run `pip uninstall transformers` in this environment, or use '
            'mmpretrain configs from an environment without it'
        )
    else:
        fix = 'reinstall it: `pip install mmpretrain==1.2.0`'
    warnings.warn(
        f'quadra_mm: mmpretrain cannot be imported ({type(error).__name__}: {error}), so '
        f'QuadraNetV2 and the hooks are registered in mmdet only (mmdet configs work; '
        f'mmpretrain configs and QuadraNet do not). Fix: {fix}.',
        RuntimeWarning,
        stacklevel=2,
    )


MMPRETRAIN_IMPORT_ERROR = _mmpretrain_import_error()
if MMPRETRAIN_IMPORT_ERROR is None:
    from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

    _MODEL_REGISTRIES = (MMDET_MODELS, MMPRETRAIN_MODELS)
    _HOOK_REGISTRIES = (MMDET_HOOKS, MMPRETRAIN_HOOKS)
else:
    _warn_mmdet_only(MMPRETRAIN_IMPORT_ERROR)
    _MODEL_REGISTRIES = (MMDET_MODELS,)
    _HOOK_REGISTRIES = (MMDET_HOOKS,)


def _register_in(*registries) -> Callable[..., T]:

    def register(module: T, name: Optional[str] = None) -> T:
        """Register ``module`` (a class, or a function that builds the
        object from the config's keyword arguments) as ``name``, by default
        its ``__name__``; returns it, so it also serves as a decorator."""
        for registry in registries:
            registry.register_module(name=name, module=module)
        return module

    return register


register_model = _register_in(*_MODEL_REGISTRIES)
register_hook = _register_in(*_HOOK_REGISTRIES)
