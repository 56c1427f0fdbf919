"""Where the quadratic adapters go in each backbone family.

Module names are those of the OpenMMLab backbones, with or without the prefix of an
enclosing model (``backbone.``, ``model.backbone.``): every pattern starts with
``(?:.*\\.)?``. The named group ``stage`` holds the number in the name from which the
0-based stage index is read (``stage = int(group) - stage_offset``).
"""

from dataclasses import dataclass
from typing import Dict, Tuple

__all__ = ['Preset', 'PRESETS', 'AUTO_PRESETS', 'auto_preset']


@dataclass(frozen=True)
class Preset:
    """Target patterns of one backbone family.

    Attributes:
        patterns: regexes matched with ``re.fullmatch`` on module names, each with a
            named group ``stage``.
        stage_offset: subtracted from the ``stage`` group to give the 0-based stage
            (ResNet counts ``layer1`` .. ``layer4``).
        description: what the patterns select.
    """

    patterns: Tuple[str, ...]
    stage_offset: int = 0
    description: str = ''


PRESETS: Dict[str, Preset] = {
    'convnext': Preset(
        (r'(?:.*\.)?stages\.(?P<stage>\d+)\.\d+\.depthwise_conv',),
        description='mmpretrain ConvNeXt: the depthwise 7x7 conv of every block',
    ),
    'resnet': Preset(
        (r'(?:.*\.)?layer(?P<stage>\d+)\.\d+\.conv2',),
        stage_offset=1,
        description='mmpretrain/mmdet ResNet, ResNeXt: conv2 of every block, the 3x3 conv '
        'of a Bottleneck (also 3x3 in a BasicBlock)',
    ),
    'swin': Preset(
        (r'(?:.*\.)?stages\.(?P<stage>\d+)\.blocks\.\d+\.ffn\.layers\.(?:0\.0|1)',),
        description='mmpretrain and mmdet SwinTransformer: both linears of every block MLP',
    ),
    'vit': Preset(
        (r'(?:.*\.)?layers\.(?P<stage>\d+)\.ffn\.layers\.(?:0\.0|1)',),
        description='mmpretrain VisionTransformer: both linears of every block MLP; '
        'the stage is the layer index',
    ),
    'cspnext': Preset(
        (r'(?:.*\.)?stage(?P<stage>\d+)\.\d+\.blocks\.\d+\.conv2\.depthwise_conv\.conv',),
        stage_offset=1,
        description='mmdet CSPNeXt: the depthwise conv of every CSPNeXtBlock',
    ),
}

# Backbone class name -> preset, for ``targets='auto'``.
AUTO_PRESETS: Dict[str, str] = {
    'ConvNeXt': 'convnext',
    'ResNet': 'resnet',
    'ResNetV1c': 'resnet',
    'ResNetV1d': 'resnet',
    'ResNeXt': 'resnet',
    'SwinTransformer': 'swin',
    'VisionTransformer': 'vit',
    'CSPNeXt': 'cspnext',
}


def auto_preset(model: object) -> str:
    """The preset of ``model``'s class or of its nearest base class in :data:`AUTO_PRESETS`.

    Raises:
        ValueError: no class in the model's MRO has a preset; lists the known ones.
    """
    for cls in type(model).__mro__:
        if cls.__name__ in AUTO_PRESETS:
            return AUTO_PRESETS[cls.__name__]
    raise ValueError(
        f"targets='auto': no preset for backbone class {type(model).__name__!r}; "
        f'known classes: {AUTO_PRESETS}; presets: {sorted(PRESETS)}'
    )
