"""Model surgery on real mmpretrain / mmdet backbones."""

import copy

import pytest
import torch
from mmcv.cnn.bricks import Conv2dAdaptivePadding
from mmcv.cnn.bricks.wrappers import Conv2d as MMCVConv2d
from mmdet.models.backbones import ResNet as DetResNet
from mmpretrain.models import ConvNeXt, ResNet, SwinTransformer, VisionTransformer
from torch import nn

from quadra_mm.adapters import (
    PRESETS,
    adapter_state_dict,
    inject_quadratic_adapters,
    load_adapter_state_dict,
    mark_trainable,
    parameter_report,
    quadratic_layers,
    reset_adapters,
)
from quadra_mm.ops import (
    QuadraticConv2d,
    QuadraticLinear,
    is_adapter_param_name,
    saved_tensor_bytes,
)

SMALL_SWIN = dict(
    arch=dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2]),
    img_size=32,
    window_size=4,
    pad_small_map=True,
)
SMALL_VIT = dict(
    arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
    img_size=32,
    patch_size=8,
)

# name -> (builder, preset, input size, number of adapted layers)
BACKBONES = {
    'convnext_atto': (lambda: ConvNeXt(arch='atto'), 'convnext', 64, 12),
    'resnet18': (lambda: ResNet(depth=18), 'resnet', 64, 8),
    'resnet50': (lambda: ResNet(depth=50), 'resnet', 64, 16),
    'mmdet_resnet18': (lambda: DetResNet(depth=18), 'resnet', 64, 8),
    'swin': (lambda: SwinTransformer(**SMALL_SWIN), 'swin', 32, 10),
    'vit': (lambda: VisionTransformer(**SMALL_VIT), 'vit', 32, 4),
}


def build(name: str):
    builder, preset, size, count = BACKBONES[name]
    model = builder()
    model.eval()  # some mm backbones' train() returns None
    return model, preset, torch.randn(2, 3, size, size), count


def assert_outputs_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_preset_preserves_function_and_checkpoint(name):
    model, preset, x, count = build(name)
    first_order = copy.deepcopy(model)
    checkpoint = copy.deepcopy(model.state_dict())
    names = inject_quadratic_adapters(model, preset, rank=4)
    assert len(names) == count
    assert all(
        isinstance(module, (QuadraticConv2d, QuadraticLinear))
        for _, module in quadratic_layers(model)
    )
    with torch.no_grad():
        assert_outputs_equal(model(x), first_order(x))
    assert_outputs_equal(model(x), first_order(x))

    # A first-order checkpoint loads into a freshly adapted model: only adapters missing.
    torch.manual_seed(1)
    fresh, *_ = build(name)
    inject_quadratic_adapters(fresh, preset, rank=4)
    missing, unexpected = fresh.load_state_dict(checkpoint, strict=False)
    assert unexpected == []
    assert set(missing) == set(adapter_state_dict(fresh)) != set()
    assert all(is_adapter_param_name(k) for k in missing)
    with torch.no_grad():
        assert_outputs_equal(fresh(x), first_order(x))


def test_stages_and_overrides():
    model = ResNet(depth=50)
    names = inject_quadratic_adapters(
        model, 'resnet', stages=[2, 3], rank=4, depthwise=False, kernel='rbf'
    )
    assert names == (
        [f'layer3.{i}.conv2' for i in range(6)] + [f'layer4.{i}.conv2' for i in range(3)]
    )
    assert [layer.stage for _, layer in quadratic_layers(model)] == [2] * 6 + [3] * 3
    assert {layer.interaction_name for _, layer in quadratic_layers(model)} == {'rbf'}

    model = ConvNeXt(arch='atto')
    targets = [
        dict(type=r'stages\.(?P<stage>3)\.\d+\.depthwise_conv', rank=2, dilation=1),
        dict(type=r'stages\.(?P<stage>\d)\.\d+\.depthwise_conv', depthwise=True),
    ]
    inject_quadratic_adapters(model, targets, stages=[0, 3], rank=4)
    layers = dict(quadratic_layers(model))
    assert sorted(layers) == [
        'stages.0.0.depthwise_conv',
        'stages.0.1.depthwise_conv',
        'stages.3.0.depthwise_conv',
        'stages.3.1.depthwise_conv',
    ]
    assert layers['stages.3.0.depthwise_conv'].rank == 2
    assert layers['stages.3.0.depthwise_conv'].quad_a.dilation == (1, 1)
    assert layers['stages.0.0.depthwise_conv'].depthwise
    # Suffix matching, no stage.
    model = VisionTransformer(**SMALL_VIT)
    assert inject_quadratic_adapters(model, [dict(type='ffn.layers.1')]) == [
        'layers.0.ffn.layers.1',
        'layers.1.ffn.layers.1',
    ]
    assert model.layers[0].ffn.layers[1].stage is None


def test_presets_with_model_prefix():
    wrapper = nn.Module()
    wrapper.backbone = ConvNeXt(arch='atto')
    names = inject_quadratic_adapters(wrapper, 'convnext', stages=[1])
    assert names == ['backbone.stages.1.0.depthwise_conv', 'backbone.stages.1.1.depthwise_conv']
    assert set(PRESETS) >= {'convnext', 'resnet', 'swin', 'vit'}


def test_mmcv_wrappers_accepted():
    model = nn.Sequential()
    model.conv = MMCVConv2d(3, 4, 3, padding=1)
    assert inject_quadratic_adapters(model, [dict(type='conv')]) == ['conv']


def test_one_step_trains_only_adapters():
    model, preset, x, _ = build('resnet18')
    inject_quadratic_adapters(model, preset, rank=4)
    mark_trainable(model, primary=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(is_adapter_param_name(name) for name in trainable)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    y0 = model(x)[0].detach()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(x)[0].square().mean().backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(is_adapter_param_name(name) for name in changed)
    assert any(name.endswith('quad_u.weight') for name in changed)
    assert not torch.equal(model(x)[0], y0)

    mark_trainable(model, primary=True)
    layer = model.layer1[0].conv2
    assert layer.weight.requires_grad and layer.quad_u.weight.requires_grad
    assert not model.layer1[0].conv1.weight.requires_grad
    assert not model.layer1[0].bn2.weight.requires_grad


def test_adapter_state_dict_roundtrip_and_report():
    model, preset, x, _ = build('resnet18')
    inject_quadratic_adapters(model, preset, rank=4)
    for _, layer in quadratic_layers(model):
        nn.init.normal_(layer.quad_u.weight)
    state = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    assert len(state) == 3 * 8 and all('.quad_' in k for k in state)
    reset_adapters(model)
    assert not any(layer.quad_u.weight.any() for _, layer in quadratic_layers(model))
    assert load_adapter_state_dict(model, state) == ([], [])
    assert all(torch.equal(v, state[k]) for k, v in adapter_state_dict(model).items())

    dropped = 'layer1.0.conv2.quad_a.weight'
    with pytest.raises(RuntimeError, match=r"missing keys \['layer1\.0\.conv2\.quad_a\.weight'\]"):
        load_adapter_state_dict(model, {k: v for k, v in state.items() if k != dropped})
    with pytest.raises(RuntimeError, match=r"unexpected keys \['conv1\.weight'\]"):
        load_adapter_state_dict(model, {**state, 'conv1.weight': model.conv1.weight})
    missing, unexpected = load_adapter_state_dict(model, {'foo.quad_a.weight': x}, strict=False)
    assert len(missing) == 24 and unexpected == ['foo.quad_a.weight']

    mark_trainable(model)
    report = parameter_report(model)
    adapter = sum(v.numel() for v in state.values())
    total = sum(p.numel() for p in model.parameters())
    assert (report.total, report.trainable, report.adapter) == (total, adapter, adapter)
    assert str(report) == (
        f'trainable params: {adapter:,} || all params: {total:,} || '
        f'trainable%: {100 * adapter / total:.4f} || '
        f'adapter params: {adapter:,}'
    )


class _WeightStandardizedConv(nn.Conv2d):
    def forward(self, x):
        w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return self._conv_forward(x, w, self.bias)


def test_surgery_errors_name_the_culprit():
    model = ConvNeXt(arch='atto')
    pristine = copy.deepcopy(model.state_dict())
    cases = [
        (dict(targets='convnxt'), r"unknown preset 'convnxt'.*'convnext'"),
        (dict(targets=[dict(type='no_such_layer')]), r"\['no_such_layer'\] match no module"),
        (dict(targets=[dict(type=r'stages\.0\.0')]), r"'stages\.0\.0'.* is a ConvNeXtBlock"),
        (dict(targets='convnext', rnak=4), r"\['rnak'\]"),
        (
            dict(targets=[dict(type='depthwise_conv', dilaton=1)]),
            r"'depthwise_conv'.*\['dilaton'\]",
        ),
        (dict(targets=[dict(rank=4)]), 'no "type"'),
        (dict(targets='convnext', rank=0), r'stages\.0\.0\.depthwise_conv.*rank must be > 0'),
        (
            dict(targets='convnext', kernel_size=2, dilation=1),
            r'stages\.0\.0\.depthwise_conv.*output shape',
        ),
        (dict(targets='convnext', kernel='cubic'), r"stages\.0\.0\.depthwise_conv.*'cubic'"),
        (dict(targets='convnext', stages=[4]), r'stage\(s\) \[4\] contain no module'),
        (
            dict(targets=[dict(type='depthwise_conv')], stages=[0]),
            r"'stages\.0\.0\.depthwise_conv'.*stage",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            inject_quadratic_adapters(model, **kwargs)
    # Nothing was replaced by the failed calls.
    assert not list(quadratic_layers(model)) and model.state_dict().keys() == pristine.keys()

    inject_quadratic_adapters(model, 'convnext', stages=[0])
    with pytest.raises(
        ValueError, match=r"'stages\.0\.0\.depthwise_conv'.*already has a quadratic adapter"
    ):
        inject_quadratic_adapters(model, 'convnext')

    vit = VisionTransformer(**SMALL_VIT)
    with pytest.raises(ValueError, match=r"ffn\.layers\.1'.*\['kernel_size'\] do not apply"):
        inject_quadratic_adapters(vit, [dict(type='ffn.layers.1', kernel_size=3)])

    custom = nn.Module()
    custom.ws = _WeightStandardizedConv(3, 3, 3)
    custom.pad = Conv2dAdaptivePadding(3, 3, 3)
    custom.attn = nn.MultiheadAttention(8, 2)
    with pytest.raises(
        ValueError, match=r"'ws'.*_WeightStandardizedConv.*overrides Conv2d\.forward"
    ):
        inject_quadratic_adapters(custom, [dict(type='ws')])
    with pytest.raises(ValueError, match=r"'pad'.*Conv2dAdaptivePadding"):
        inject_quadratic_adapters(custom, [dict(type='pad')])
    with pytest.raises(ValueError, match=r"'attn\.out_proj'.*MultiheadAttention"):
        inject_quadratic_adapters(custom, [dict(type='out_proj')])


@pytest.mark.parametrize('autocast', [False, True], ids=['fp32', 'bf16'])
def test_saved_activations_convnext_tiny(autocast):
    """Memory-efficient adapters on every depthwise conv of ConvNeXt-T keep the saved
    activations (parameters excluded) within 10% of the first-order model's."""
    model = ConvNeXt(arch='tiny')
    x = torch.randn(1, 3, 128, 128)

    def saved_bytes():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            return saved_tensor_bytes(lambda: model(x), ignore=model.parameters())[0]

    first_order = saved_bytes()
    inject_quadratic_adapters(model, 'convnext', rank=8, kernel_size=3, dilation=2)
    assert saved_bytes() / first_order <= 1.10
