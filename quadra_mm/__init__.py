"""quadra-mm: QuadraNet V2 quadratic adaptation for OpenMMLab.

``import quadra_mm`` (or ``custom_imports = dict(imports=['quadra_mm'])`` in
a config) makes mmengine work on torch 2.14 (:mod:`quadra_mm.compat`) and
registers the backbones and hooks in both mmdet's and mmpretrain's registries.
"""
from . import compat

compat.install()

from . import hooks, models  # noqa: E402  (registration needs compat first)

__version__ = '0.1.0'
__all__ = ['compat', 'hooks', 'models', '__version__']
