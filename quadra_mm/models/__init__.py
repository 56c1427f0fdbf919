from .checkpoint import load_adapted_checkpoint, load_trained_checkpoint
from .deform_conv import (QuadraticDeformConv2dPack,
                          QuadraticModulatedDeformConv2dPack)
from .exported import ExportedQuadraNet
from .quadranet import QuadraNet
from .quadranet_v2 import QuadraNetV2

__all__ = [
    'ExportedQuadraNet', 'QuadraNet', 'QuadraNetV2',
    'QuadraticDeformConv2dPack', 'QuadraticModulatedDeformConv2dPack',
    'load_adapted_checkpoint', 'load_trained_checkpoint'
]
