"""Datasets of quadra-mm. Nothing here may import OpenMMLab packages at import time."""
from .demo_shapes import make_demo_data

__all__ = ['make_demo_data']
