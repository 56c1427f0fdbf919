"""quadra-mm: QuadraNet V2 quadratic adaptation for OpenMMLab.

``quadra_mm.ops`` (quadratic layers), ``quadra_mm.adapters`` (model surgery)
and ``quadra_mm.deploy`` (inference export) are pure PyTorch and import on a
machine without OpenMMLab. Where mmengine is installed, ``import quadra_mm``
(in configs: ``custom_imports = dict(imports=['quadra_mm'])``) also loads the
OpenMMLab glue: it makes mmengine work on torch 2.14
(:mod:`quadra_mm.compat`) and registers the backbones and hooks in both
mmdet's and mmpretrain's registries.
"""

__version__ = '0.1.0'


def _openmmlab_installed() -> bool:
    try:
        import mmengine  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != 'mmengine':
            raise  # mmengine is there but broken: say so
        return False
    return True


if _openmmlab_installed():
    from . import mm_extensions

    mm_extensions.install()

    from . import hooks, models  # noqa: E402  (registration needs the extensions)

    __all__ = ['hooks', 'mm_extensions', 'models', '__version__']
else:
    __all__ = ['__version__']
