"""Build the inference form of a quadratic backbone from a config, so that an
exported checkpoint (``tools/export.py``) loads with the mm tools."""

from mmengine.registry import MODELS
from torch import nn

from quadra_mm.adapters import quadratic_layers
from quadra_mm.registry import register_model


@register_model
def ExportedQuadraNet(model: dict) -> nn.Module:  # noqa: N802
    """A ``QuadraNetV2`` / ``QuadraNet`` backbone built from its config with
    every quadratic layer :meth:`fused <quadra_mm.ops.QuadraticNeuron.fuse>`
    (the form :func:`~quadra_mm.deploy.export_for_inference` gives).

    Fused layers keep the training state-dict keys and recompute their fused buffers on
    every checkpoint load, so the exported checkpoint, or the training one,
    loads into it strictly; a layer whose loaded ``U`` is zero skips its
    branch.

    Args:
        model (dict): the backbone's training config (``type='QuadraNetV2'``
            or ``'QuadraNet'``), without a ``Pretrained`` ``init_cfg``.
    """
    module = MODELS.build(model)
    for _, layer in quadratic_layers(module):
        layer.fuse()
    module.qnv2_pretrained = None
    return module
