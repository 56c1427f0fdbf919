from .checkpoint import load_adapted_checkpoint, load_trained_checkpoint
from .deform_conv import (QuadraticDeformConv2dPack,
                          QuadraticModulatedDeformConv2dPack)
from .exported import ExportedQuadraNet
from .quadranet import QuadraNet
from .quadranet_v2 import QuadraNetV2
from .swin_checkpoint import SWIN_SCHEME

__all__ = [
    'ExportedQuadraNet', 'QuadraNet', 'QuadraNetV2',
    'QuadraticDeformConv2dPack', 'QuadraticModulatedDeformConv2dPack',
    'SWIN_SCHEME',
    'load_adapted_checkpoint', 'load_trained_checkpoint'
]
