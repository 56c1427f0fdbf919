"""Quadratic-neuron layers, interaction kernels and the memory-efficient backward.

Pure PyTorch: nothing here imports an OpenMMLab package.
"""
from .autograd import QuadraticBranch, autocast_input
from .functional import (
    adapter_padding,
    fuse_projections,
    pointwise_conv,
    pointwise_conv_backward,
    split_projections,
    subsampled_geometry,
)
from .kernels import (
    KERNELS,
    InteractionKernel,
    LinearKernel,
    PolyKernel,
    QuadraticKernel,
    RBFKernel,
    build_kernel,
)
from .layers import (
    ADAPTER_PREFIX,
    QuadraticConv2d,
    QuadraticConvBranch,
    QuadraticLinear,
    QuadraticNeuron,
    is_adapter_param_name,
    layer_config,
    share_parameters,
)
from .profiling import saved_tensor_bytes
from .triton_kernels import fused_branch_add_

__all__ = [
    'QuadraticNeuron', 'QuadraticConvBranch', 'QuadraticConv2d', 'QuadraticLinear', 'KERNELS',
    'build_kernel', 'InteractionKernel', 'QuadraticKernel', 'LinearKernel', 'RBFKernel',
    'PolyKernel', 'ADAPTER_PREFIX', 'is_adapter_param_name', 'layer_config', 'share_parameters',
    'QuadraticBranch', 'autocast_input', 'adapter_padding', 'fuse_projections',
    'split_projections', 'pointwise_conv', 'pointwise_conv_backward', 'subsampled_geometry',
    'saved_tensor_bytes', 'fused_branch_add_'
]
