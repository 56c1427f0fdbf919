"""quadra-mm: QuadraNet V2 quadratic adaptation for OpenMMLab."""
__version__ = '0.1.0'
