"""Inference export of adapted models (pure PyTorch)."""
from .export import export_for_inference
from .fused import FusedQuadraticConv2d, FusedQuadraticLinear, FusedQuadraticNeuron, to_inference_module

__all__ = [
    'export_for_inference', 'to_inference_module', 'FusedQuadraticNeuron', 'FusedQuadraticConv2d',
    'FusedQuadraticLinear'
]
