"""targets='auto' and the cspnext preset on real mmdet backbones."""

import pytest
import torch
from mmdet.models.backbones import CSPNeXt, ResNet, ResNetV1d
from torch import nn

from quadra_mm.adapters import inject_quadratic_adapters
from quadra_mm.adapters.presets import auto_preset


def test_auto_preset_by_class_and_mro():
    assert auto_preset(ResNet(depth=18)) == 'resnet'
    assert auto_preset(ResNetV1d(depth=18)) == 'resnet'
    assert auto_preset(CSPNeXt(deepen_factor=0.167, widen_factor=0.125)) == 'cspnext'
    with pytest.raises(ValueError, match="'Sequential'.*cspnext"):
        auto_preset(nn.Sequential())


def test_auto_cspnext_adapts_block_depthwise_convs_exactly():
    model = CSPNeXt(deepen_factor=0.167, widen_factor=0.125)
    model.eval()  # CSPNeXt.train returns None
    x = torch.randn(1, 3, 64, 64)
    ref = [t.clone() for t in model(x)]
    names = inject_quadratic_adapters(model, 'auto')
    assert names and all(n.endswith('conv2.depthwise_conv.conv') for n in names)
    assert all(torch.equal(a, b) for a, b in zip(model(x), ref))


def test_auto_mmdet_swin_adapts_both_mlp_linears_of_every_block():
    from mmdet.models.backbones import SwinTransformer

    model = SwinTransformer(embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
    assert len(inject_quadratic_adapters(model, 'auto')) == 2 * 4


def _small_backbones():
    from mmdet.models.backbones import RegNet, ResNeXt
    from mmdet.models.backbones import SwinTransformer as DetSwin
    from mmpretrain.models import ConvNeXt, SwinTransformer, VisionTransformer

    dcn = dict(type='DCNv2', deform_groups=1, fallback_on_stride=False)
    # name -> (builder, preset, number of adapted layers)
    return {
        'mmdet_resnext50': (lambda: ResNeXt(depth=50, groups=32, base_width=4), 'resnet', 16),
        'mmdet_regnetx_400mf': (lambda: RegNet(arch='regnetx_400mf'), 'resnet', 22),
        'mmdet_resnet50_dcnv2': (
            lambda: ResNet(depth=50, dcn=dcn, stage_with_dcn=(False, True, True, True)),
            'resnet',
            16,
        ),
        'mmdet_swin': (
            lambda: DetSwin(embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)),
            'swin',
            8,
        ),
        'mmdet_cspnext': (lambda: CSPNeXt(deepen_factor=0.167, widen_factor=0.125), 'cspnext', 4),
        'mmpretrain_convnext': (lambda: ConvNeXt(arch='atto'), 'convnext', 12),
        'mmpretrain_swin': (
            lambda: SwinTransformer(
                arch=dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2]),
                img_size=64,
                window_size=4,
                pad_small_map=True,
            ),
            'swin',
            10,
        ),
        'mmpretrain_vit': (
            lambda: VisionTransformer(
                arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
                img_size=64,
                patch_size=16,
            ),
            'vit',
            4,
        ),
    }


@pytest.mark.parametrize('name', sorted(_small_backbones()))
def test_auto_on_backbone_classes_is_exact(name):
    """The preset comes from the backbone's class (or base class: RegNet and
    ResNeXt are ResNets), and the adapted backbone computes the same."""
    builder, preset, count = _small_backbones()[name]
    torch.manual_seed(0)
    model = builder()
    model.eval()
    assert auto_preset(model) == preset
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = [t.clone() for t in model(x)]
    assert len(inject_quadratic_adapters(model, 'auto', rank=4)) == count
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), ref))


def test_auto_from_a_config():
    """QuadraNetV2 hands the built backbone to auto_preset."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import quadra_mm  # noqa: F401
    from quadra_mm.adapters import quadratic_layers

    init_default_scope('mmdet')
    model = MODELS.build(
        dict(type='QuadraNetV2', targets='auto', backbone=dict(type='RegNet', arch='regnetx_400mf'))
    )
    names = [name for name, _ in quadratic_layers(model)]
    assert len(names) == 22 and all(n.endswith('.conv2') for n in names)
    with pytest.raises(ValueError, match="no preset for backbone class 'HRNet'"):
        MODELS.build(
            dict(
                type='QuadraNetV2',
                targets='auto',
                backbone=dict(
                    type='HRNet',
                    extra=dict(
                        stage1=dict(
                            num_modules=1,
                            num_branches=1,
                            block='BOTTLENECK',
                            num_blocks=(1,),
                            num_channels=(8,),
                        ),
                        stage2=dict(
                            num_modules=1,
                            num_branches=2,
                            block='BASIC',
                            num_blocks=(1, 1),
                            num_channels=(8, 16),
                        ),
                        stage3=dict(
                            num_modules=1,
                            num_branches=3,
                            block='BASIC',
                            num_blocks=(1, 1, 1),
                            num_channels=(8, 16, 32),
                        ),
                        stage4=dict(
                            num_modules=1,
                            num_branches=4,
                            block='BASIC',
                            num_blocks=(1, 1, 1, 1),
                            num_channels=(8, 16, 32, 64),
                        ),
                    ),
                ),
            )
        )
