from .deform_conv import QuadraticDeformConv2dPack, QuadraticModulatedDeformConv2dPack
from .exported import ExportedQuadraNet
from .pretrained_checkpoint import load_adapted_checkpoint
from .quadranet import QuadraNet
from .quadranet_v2 import QuadraNetV2, build_quadranet_v2
from .swin_checkpoint import SWIN_SCHEME
from .trained_checkpoint import load_trained_checkpoint

__all__ = [
    'ExportedQuadraNet', 'QuadraNet', 'QuadraNetV2', 'build_quadranet_v2',
    'QuadraticDeformConv2dPack', 'QuadraticModulatedDeformConv2dPack',
    'SWIN_SCHEME', 'load_adapted_checkpoint', 'load_trained_checkpoint'
]
