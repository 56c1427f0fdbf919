"""Export of an adapted model for inference."""
import copy

import torch
from torch import nn

from ..adapters import quadratic_layers, replace_module
from .fused import to_inference_module

__all__ = ['export_for_inference']


def export_for_inference(model: nn.Module, inplace: bool = False, compile: bool = False) -> nn.Module:
    """Turn every quadratic layer of ``model`` into its inference form.

    Each :class:`~quadra_mm.ops.QuadraticNeuron` becomes a module that runs ``A`` and
    ``B`` as one conv/linear with ``2r`` outputs and has the scale folded into ``U``;
    one whose ``U`` is exactly zero becomes the plain ``nn.Conv2d``/``nn.Linear`` (see
    :func:`~quadra_mm.deploy.fused.to_inference_module`). Outputs match the adapted
    model up to float rounding.

    Args:
        model: the adapted model.
        inplace: modify ``model`` itself instead of a deep copy.
        compile: wrap the result with ``torch.compile``.

    Returns:
        The exported model, in eval mode.
    """
    if not inplace:
        model = copy.deepcopy(model)
    for name, layer in list(quadratic_layers(model)):
        if name:
            replace_module(model, name, to_inference_module(layer))
        else:
            model = to_inference_module(layer)
    model.eval()
    return torch.compile(model) if compile else model
