from .checkpoint import load_adapted_checkpoint
from .quadranet import QuadraNet
from .quadranet_v2 import QuadraNetV2

__all__ = ['QuadraNet', 'QuadraNetV2', 'load_adapted_checkpoint']
