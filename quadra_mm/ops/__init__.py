"""Quadratic-neuron layers, interactions and the analytic backward.

Pure PyTorch: nothing here imports an OpenMMLab package.
"""

from .autograd import QuadraticTerm, autocast_input
from .functional import (
    adapter_padding,
    fuse_projections,
    pointwise_conv,
    pointwise_conv_backward,
    split_projections,
    subsampled_geometry,
)
from .interactions import (
    INTERACTIONS,
    Interaction,
    LinearInteraction,
    PolyInteraction,
    QuadraticInteraction,
    RBFInteraction,
    build_interaction,
)
from .layers import (
    ADAPTER_PREFIX,
    QuadraticConv2d,
    QuadraticConvNeuron,
    QuadraticLinear,
    QuadraticNeuron,
    interaction_options,
    is_adapter_param_name,
    layer_config,
    share_parameters,
)
from .profiling import saved_tensor_bytes
from .triton_kernels import fused_quadratic_term_add_

__all__ = [
    'QuadraticNeuron',
    'QuadraticConvNeuron',
    'QuadraticConv2d',
    'QuadraticLinear',
    'INTERACTIONS',
    'build_interaction',
    'Interaction',
    'QuadraticInteraction',
    'LinearInteraction',
    'RBFInteraction',
    'PolyInteraction',
    'ADAPTER_PREFIX',
    'is_adapter_param_name',
    'layer_config',
    'share_parameters',
    'interaction_options',
    'QuadraticTerm',
    'autocast_input',
    'adapter_padding',
    'fuse_projections',
    'split_projections',
    'pointwise_conv',
    'pointwise_conv_backward',
    'subsampled_geometry',
    'saved_tensor_bytes',
    'fused_quadratic_term_add_',
]
