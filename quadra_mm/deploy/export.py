"""Export of an adapted model for inference."""

import copy

import torch
from torch import nn

from ..adapters import quadratic_layers, replace_module
from ..ops import QuadraticNeuron, layer_config, share_parameters

__all__ = ['export_for_inference', 'plain_layer']


def plain_layer(layer: QuadraticNeuron) -> nn.Module:
    """The first-order layer ``L`` of ``layer`` alone, sharing its weight and bias."""
    plain = nn.Conv2d if isinstance(layer, nn.Conv2d) else nn.Linear
    return share_parameters(plain(**layer_config(layer), device='meta'), layer)


def export_for_inference(
    model: nn.Module, inplace: bool = False, compile: bool = False, drop_zero_adapters: bool = False
) -> nn.Module:
    """The inference form of ``model``: every quadratic layer :meth:`fused
    <quadra_mm.ops.QuadraticNeuron.fuse>`.

    A fused layer runs ``A`` and ``B`` as one conv/linear with ``2r`` outputs, has the
    scale folded into ``U`` and skips its quadratic term when ``U`` is exactly zero; its state
    dict keeps the training keys, so the exported model loads the training checkpoint
    and its own. Outputs match the adapted model up to float rounding.

    Args:
        model: the adapted model.
        inplace: modify ``model`` itself instead of a deep copy.
        compile: wrap the result with ``torch.compile``.
        drop_zero_adapters: replace ``nn.Conv2d``/``nn.Linear`` layers whose ``U`` is
            zero by the plain layer (their adapter keys leave the state dict).

    Returns:
        The exported model, in eval mode.
    """
    if not inplace:
        model = copy.deepcopy(model)
    for name, layer in list(quadratic_layers(model)):
        layer.fuse()
        if (
            drop_zero_adapters
            and layer.quadratic_term_is_zero
            and isinstance(layer, (nn.Conv2d, nn.Linear))
        ):
            if name:
                replace_module(model, name, plain_layer(layer))
            else:
                model = plain_layer(layer)
    model.eval()
    return torch.compile(model) if compile else model
