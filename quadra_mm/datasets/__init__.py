"""Datasets of quadra-mm. Nothing here may import OpenMMLab packages at import time."""
from .demo_shapes import CLASSES as DEMO_SHAPES_CLASSES
from .demo_shapes import make_demo_data

__all__ = ['DEMO_SHAPES_CLASSES', 'make_demo_data']
