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
