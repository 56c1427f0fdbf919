"""Official Swin Transformer checkpoints in mmdet's ``SwinTransformer`` layout.

mmdet's ``SwinTransformer`` converts an official checkpoint (``layers.*``,
``attn.qkv``, ``mlp.fc1``, ...) with its ``swin_converter`` inside its own
``init_weights`` (``convert_weights=True``). A QuadraNetV2 backbone loads its
``Pretrained`` checkpoint itself, strictly, and never runs that code; the
checkpoint address ``mmdet-swin://<address>`` gives it the converted weights
instead, ``<address>`` being any URL or path mmengine reads.
"""

from typing import Optional

from mmengine.runner import CheckpointLoader

__all__ = ['SWIN_SCHEME', 'load_swin_as_mmdet']

SWIN_SCHEME = 'mmdet-swin://'


@CheckpointLoader.register_scheme(prefixes=SWIN_SCHEME)
def load_swin_as_mmdet(filename: str, map_location: Optional[str] = None) -> dict:
    """mmengine checkpoint loader of ``mmdet-swin://<address>``.

    Returns:
        ``{'state_dict': ...}``: the official checkpoint at ``<address>``
        (its ``model`` dict) converted by mmdet's ``swin_converter``: keys
        under ``backbone.``, the classifier head dropped, the final ``norm``
        and the ``attn_mask`` buffers kept under their official names.
    """
    # Imported here: importing mmdet's models takes seconds, and quadra_mm
    # is imported by mmpretrain-only runs too.
    from mmdet.models.backbones.swin import swin_converter

    loaded = CheckpointLoader.load_checkpoint(
        filename[len(SWIN_SCHEME) :], map_location=map_location
    )
    return {'state_dict': swin_converter(loaded.get('model', loaded))}
