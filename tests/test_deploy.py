"""Inference export: fused A/B projection, folded scale, dropped zero adapters."""
import pytest
import torch
from mmpretrain.models import ConvNeXt, VisionTransformer
from torch import nn

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers
from quadra_mm.deploy import (FusedQuadraticConv2d, FusedQuadraticLinear, FusedQuadraticNeuron,
                              export_for_inference)
from quadra_mm.ops import QuadraticConv2d, QuadraticLinear, QuadraticNeuron, is_adapter_param_name


def randomize_adapters(model: nn.Module, skip_every: int = 0) -> None:
    """Give the adapters a trained-looking ``U``; every ``skip_every``-th keeps U = 0."""
    for index, (_, layer) in enumerate(quadratic_layers(model)):
        if skip_every and index % skip_every == 0:
            continue
        nn.init.normal_(layer.quad_u.weight, std=0.2)


def max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize('kernel', ['quadratic', 'rbf', 'poly'])
def test_export_convnext_matches(kernel):
    model = ConvNeXt(arch='atto', layer_scale_init_value=1.0)
    model.eval()
    targets = [dict(type=r'stages\.3\.\d+\.depthwise_conv', depthwise=True),
               dict(type='depthwise_conv')]
    inject_quadratic_adapters(model, targets, rank=4, kernel=kernel)
    randomize_adapters(model, skip_every=3)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        exported = export_for_inference(model)
        assert exported is not model and not exported.training
        assert max_diff(exported(x), expected) <= 1e-5

    kinds = [type(m) for _, m in exported.named_modules() if _.endswith('depthwise_conv')]
    assert kinds.count(nn.Conv2d) == 4 and kinds.count(FusedQuadraticConv2d) == 8
    assert not any(isinstance(m, QuadraticNeuron) for m in exported.modules())
    # The original is untouched; the exported layers share nothing with it.
    assert sum(isinstance(m, QuadraticConv2d) for m in model.modules()) == 12
    fused = exported.stages[0][1].depthwise_conv
    original = model.stages[0][1].depthwise_conv
    assert fused.quad_ab.out_channels == 8 and not fused.interleave
    torch.testing.assert_close(fused.quad_u.weight, original.quad_u.weight * original.scale)
    assert exported.stages[3][0].depthwise_conv.interleave
    # Primary weights keep their keys.
    primary_keys = {k for k in model.state_dict() if not is_adapter_param_name(k)}
    assert {k for k in exported.state_dict() if not is_adapter_param_name(k)} == primary_keys


def test_export_inplace_shares_primary_weights():
    model = VisionTransformer(arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
                              img_size=32, patch_size=8)
    inject_quadratic_adapters(model, 'vit', rank=4)
    randomize_adapters(model, skip_every=2)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        weight = model.layers[0].ffn.layers[1].weight
        exported = export_for_inference(model, inplace=True)
        assert exported is model
        assert max_diff(model(x), expected) <= 1e-5
    plain, fused = model.layers[0].ffn.layers[0][0], model.layers[0].ffn.layers[1]
    assert type(plain) is nn.Linear and isinstance(fused, FusedQuadraticLinear)
    assert fused.weight is weight and fused.quad_ab.out_features == 8


def test_export_single_layer():
    layer = QuadraticLinear.from_linear(nn.Linear(6, 5), rank=3, alpha=6)
    nn.init.normal_(layer.quad_u.weight)
    x = torch.randn(4, 6)
    with torch.no_grad():
        exported = export_for_inference(layer)
        assert isinstance(exported, FusedQuadraticNeuron)
        torch.testing.assert_close(exported(x), layer(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(exported.branch(x), layer.branch(x), rtol=0, atol=1e-6)
