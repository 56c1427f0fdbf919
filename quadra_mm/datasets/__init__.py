"""Datasets of quadra-mm. Importing the package pulls in nothing from OpenMMLab;
``quadra_mm.datasets.fashion_mnist`` (the study's mmpretrain dataset) is imported
by the configs that use it."""

from .demo_shapes import make_demo_data
from .fashion_mnist_files import prepare_fashion_mnist
from .fashion_mnist_shift import apply_shift

__all__ = ['make_demo_data', 'prepare_fashion_mnist', 'apply_shift']
