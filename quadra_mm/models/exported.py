"""Build the inference form of a quadratic backbone from a config, so that an
exported checkpoint (``tools/export.py``) loads with the mm tools."""
from typing import Sequence

import torch
from mmengine.registry import MODELS
from torch import nn

from quadra_mm.adapters import quadratic_layers, replace_module
from quadra_mm.deploy import to_inference_module
from quadra_mm.registry import register_model


def fused_layer_names(module: nn.Module) -> list:
    """The quadratic layers of ``module`` that export keeps as fused layers
    (a non-zero ``U``); the others export to plain convs/linears."""
    return [name for name, layer in quadratic_layers(module)
            if layer.quad_u.weight.any()]


@register_model
def ExportedQuadraNet(model: dict, fused: Sequence[str]) -> nn.Module:  # noqa: N802
    """The inference form (:func:`~quadra_mm.deploy.export_for_inference`)
    of a ``QuadraNetV2`` / ``QuadraNet`` backbone, built from its config.

    Export turns a quadratic layer into a fused layer (``A``/``B`` as one
    projection, the scale folded into ``U``) or, when its ``U`` is zero, into
    the plain layer; which one is a property of the trained weights, so the
    config lists the fused layers. The values come from the exported
    checkpoint.

    Args:
        model (dict): the backbone's training config (``type='QuadraNetV2'``
            or ``'QuadraNet'``), without a ``Pretrained`` ``init_cfg``.
        fused (Sequence[str]): names (relative to the backbone) of the
            layers exported as fused layers.

    Raises:
        ValueError: a name in ``fused`` is not a quadratic layer of it.
    """
    module = MODELS.build(model)
    layers = dict(quadratic_layers(module))
    unknown = sorted(set(fused) - set(layers))
    if unknown:
        raise ValueError(f'ExportedQuadraNet: `fused` names layers that are '
                         f'not quadratic layers of {type(module).__name__}: '
                         f'{unknown[:8]}')
    with torch.no_grad():
        for name, layer in layers.items():
            # to_inference_module fuses exactly the layers whose U is
            # non-zero (U is zero when built); the values are loaded later.
            layer.quad_u.weight.fill_(1.0 if name in fused else 0.0)
            replace_module(module, name, to_inference_module(layer))
    module.qnv2_pretrained = None
    return module
