from quadra_mm.registry import MMPRETRAIN_IMPORT_ERROR

from .deform_conv import QuadraticDeformConv2dPack, QuadraticModulatedDeformConv2dPack
from .exported import ExportedQuadraNet
from .pretrained_checkpoint import load_adapted_checkpoint
from .quadranet_v2 import QuadraNetV2, build_quadranet_v2
from .swin_checkpoint import SWIN_SCHEME
from .trained_checkpoint import load_trained_checkpoint

if MMPRETRAIN_IMPORT_ERROR is None:  # QuadraNet is mmpretrain's ConvNeXt
    from .quadranet import QuadraNet  # noqa: F401

__all__ = [
    'ExportedQuadraNet',
    'QuadraNetV2',
    'build_quadranet_v2',
    'QuadraticDeformConv2dPack',
    'QuadraticModulatedDeformConv2dPack',
    'SWIN_SCHEME',
    'load_adapted_checkpoint',
    'load_trained_checkpoint',
] + (['QuadraNet'] if MMPRETRAIN_IMPORT_ERROR is None else [])
