"""Inference export of adapted models (pure PyTorch)."""
from .export import export_for_inference
from .fused import FusedQuadraticConv2d, FusedQuadraticLinear, FusedQuadraticNeuron, to_inference_module
from .triton_kernels import fused_branch_add_

__all__ = [
    'export_for_inference', 'to_inference_module', 'FusedQuadraticNeuron', 'FusedQuadraticConv2d',
    'FusedQuadraticLinear', 'fused_branch_add_'
]
