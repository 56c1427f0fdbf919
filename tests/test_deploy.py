"""Inference form as a state of the layer: ``fuse()`` / ``unfuse()``, fused A/B
projection, folded scale, zero adapters skipped, training keys kept."""

import pytest
import torch
from mmpretrain.models import ConvNeXt, VisionTransformer
from torch import nn

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers
from quadra_mm.deploy import export_for_inference
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
    targets = [
        dict(type=r'stages\.3\.\d+\.depthwise_conv', depthwise=True),
        dict(type='depthwise_conv'),
    ]
    inject_quadratic_adapters(model, targets, rank=4, interaction=kernel)
    randomize_adapters(model, skip_every=3)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        exported = export_for_inference(model)
        assert exported is not model and not exported.training
        assert max_diff(exported(x), expected) <= 1e-5

    layers = dict(quadratic_layers(exported))
    assert len(layers) == 12 and all(layer.fused for layer in layers.values())
    assert sum(layer.quadratic_term_is_zero for layer in layers.values()) == 4
    # The original is untouched.
    assert not any(layer.fused for _, layer in quadratic_layers(model))
    fused = exported.stages[0][1].depthwise_conv
    original = model.stages[0][1].depthwise_conv
    assert fused.fused_ab_weight.shape[0] == 8
    torch.testing.assert_close(fused.fused_u_weight, original.quad_u.weight * original.scale)
    # Same state-dict keys as training: the exported model loads the training checkpoint.
    assert exported.state_dict().keys() == model.state_dict().keys()


def test_fused_layer_refuses_on_load_and_unfuses():
    """A fused layer's buffers follow every state dict loaded into it."""
    trained = QuadraticConv2d.from_conv(nn.Conv2d(8, 8, 3, padding=1), rank=4)
    nn.init.normal_(trained.quad_u.weight, std=0.3)
    fresh = QuadraticConv2d.from_conv(nn.Conv2d(8, 8, 3, padding=1), rank=4).fuse()
    assert fresh.quadratic_term_is_zero and not any('fused' in k for k in fresh.state_dict())
    fresh.load_state_dict(trained.state_dict(), strict=True)
    assert not fresh.quadratic_term_is_zero
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=1e-5)
        fresh.unfuse()
        assert fresh.fused_ab_weight is None and torch.equal(fresh(x), trained(x))


def test_fused_zero_adapter_is_the_plain_layer():
    conv = nn.Conv2d(6, 6, 3, padding=1)
    layer = QuadraticConv2d.from_conv(conv, rank=2).fuse()
    x = torch.randn(1, 6, 7, 7)
    with torch.no_grad():
        assert torch.equal(layer(x), conv(x))


def test_export_drop_zero_adapters():
    model = VisionTransformer(
        arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
        img_size=32,
        patch_size=8,
    )
    inject_quadratic_adapters(model, 'vit', rank=4)
    randomize_adapters(model, skip_every=2)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        weight = model.layers[0].ffn.layers[1].weight
        exported = export_for_inference(model, inplace=True, drop_zero_adapters=True)
        assert exported is model
        assert max_diff(model(x), expected) <= 1e-5
    plain, fused = model.layers[0].ffn.layers[0][0], model.layers[0].ffn.layers[1]
    assert type(plain) is nn.Linear and isinstance(fused, QuadraticLinear) and fused.fused
    assert fused.weight is weight and fused.fused_ab_weight.shape[0] == 8
    assert not any(is_adapter_param_name(k) for k in plain.state_dict())


def test_export_single_layer():
    layer = QuadraticLinear.from_linear(nn.Linear(6, 5), rank=3, alpha=6)
    nn.init.normal_(layer.quad_u.weight)
    x = torch.randn(4, 6)
    with torch.no_grad():
        exported = export_for_inference(layer)
        assert isinstance(exported, QuadraticNeuron) and exported.fused
        torch.testing.assert_close(exported(x), layer(x), rtol=0, atol=1e-6)
