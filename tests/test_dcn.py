"""Quadratic adapters beside mmcv's deformable convs (mmdet's DCN ResNets):
bit-exact start, gradients, memory, export, FLOPs, stage training."""

import copy

import pytest
import torch
from mmcv.ops import DeformConv2d, DeformConv2dPack, ModulatedDeformConv2dPack
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS
from mmengine.analysis import get_model_complexity_info
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from torch import nn

import quadra_mm  # noqa: F401  (registers the DCN adapters)
from quadra_mm.adapters import inject_quadratic_adapters, mark_trainable, quadratic_layers
from quadra_mm.deploy import export_for_inference
from quadra_mm.models import QuadraticDeformConv2dPack, QuadraticModulatedDeformConv2dPack
from quadra_mm.ops import (
    QuadraticNeuron,
    QuadraticTerm,
    is_adapter_param_name,
    saved_tensor_bytes,
)

from helpers import RecordChanges, tiny_training

DCN_TYPES = {
    'DCN': (DeformConv2dPack, QuadraticDeformConv2dPack),
    'DCNv2': (ModulatedDeformConv2dPack, QuadraticModulatedDeformConv2dPack),
}
RANK, K = 4, 3


def dcn_resnet50(dcn_type: str) -> nn.Module:
    """mmdet's R-50 of the dconv-c3-c5 configs, with offsets that deform (the
    offset convs start at zero in mmdet, where the DCN is a plain conv)."""
    torch.manual_seed(0)
    # zero_init_residual=False: mmdet zeroes the last BN of every block,
    # which would hide the residual branches from the output.
    model = ResNet(
        depth=50,
        zero_init_residual=False,
        dcn=dict(type=dcn_type, deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
    )
    model.init_weights()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DeformConv2d):
                module.conv_offset.weight.normal_(std=0.02)
    model.eval()  # mmdet's ResNet.train() returns None
    return model


def randomize_u(model: nn.Module, std: float = 0.05) -> None:
    with torch.no_grad():
        for _, layer in quadratic_layers(model):
            layer.quad_u.weight.normal_(std=std)


@pytest.mark.parametrize('dcn_type', sorted(DCN_TYPES))
def test_adapted_dcn_resnet_equals_first_order_and_keeps_keys(dcn_type):
    first_order, quadratic = DCN_TYPES[dcn_type]
    model = dcn_resnet50(dcn_type)
    reference = copy.deepcopy(model)
    keys = set(model.state_dict())
    # mmcv 2.1's DCN (v1) refuses inputs smaller than its kernel: 3x3 at
    # layer4 needs 96x96.
    x = torch.randn(2, 3, 96, 96)
    names = inject_quadratic_adapters(model, 'resnet', rank=RANK)
    layers = dict(quadratic_layers(model))
    assert len(names) == 16
    dcn_names = [n for n, layer in layers.items() if isinstance(layer, quadratic)]
    # conv2 of every block of stages 2-4 (4 + 6 + 3 blocks) is deformable.
    assert len(dcn_names) == 13 and all(
        isinstance(layer, first_order) for layer in layers.values() if isinstance(layer, quadratic)
    )
    assert {k for k in model.state_dict() if not is_adapter_param_name(k)} == keys
    assert 'layer2.0.conv2.conv_offset.weight' in keys
    # The primary term is the DCN's own Parameters, shared.
    original = reference.layer2[0].conv2
    assert model.layer2[0].conv2.conv_offset.weight.shape == original.conv_offset.weight.shape
    # Bit-exact at init, with and without autograd (the in-place branch).
    with torch.no_grad():
        expected = reference(x)
        got = model(x)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert all(torch.equal(a, b) for a, b in zip(model(x), expected))
    # A first-order checkpoint loads with only adapter keys missing.
    result = model.load_state_dict(reference.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(is_adapter_param_name(k) for k in result.missing_keys)


def test_wrapping_shares_the_dcn_parameters():
    dcn = ModulatedDeformConv2dPack(8, 8, 3, stride=2, padding=1)
    layer = QuadraticModulatedDeformConv2dPack.from_dcn(dcn, rank=RANK)
    assert layer.weight is dcn.weight and layer.bias is dcn.bias
    assert layer.conv_offset is dcn.conv_offset
    assert {id(p) for p in layer.primary_parameters()} == {id(p) for p in dcn.parameters()}
    # A and B: plain atrous convs with L's stride and output shape.
    assert layer.quad_a.stride == (2, 2) and layer.quad_a.dilation == (2, 2)
    x = torch.randn(1, 8, 11, 9)
    assert layer.quadratic_term(x).shape == dcn(x).shape
    assert 'quad_a' in repr(
        QuadraticDeformConv2dPack.from_dcn(DeformConv2dPack(4, 4, 3, padding=1))
    )


@pytest.mark.parametrize('dcn_type', sorted(DCN_TYPES))
@pytest.mark.parametrize('stride', [1, 2])
def test_quadratic_term_gradcheck(dcn_type, stride):
    """The branch's analytic backward (double precision), on the geometry
    of a DCN ResNet's conv2 (strided in the first block of a stage)."""
    first_order, quadratic = DCN_TYPES[dcn_type]
    dcn = first_order(3, 4, 3, stride=stride, padding=1).double()
    layer = quadratic.from_dcn(dcn, rank=2, name='conv2')
    assert layer.quad_a.weight.dtype == torch.float64
    weights = [
        w.detach().normal_().requires_grad_()
        for w in (layer.quad_a.weight, layer.quad_b.weight, layer.quad_u.weight)
    ]
    x = torch.randn(1, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *args: QuadraticTerm.apply(layer, None, *args), (x, *weights)
    )


def test_train_step_changes_the_output_and_not_the_primary_term():
    model = dcn_resnet50('DCNv2')
    inject_quadratic_adapters(model, 'resnet', rank=RANK)
    mark_trainable(model)
    layer = model.layer3[0].conv2
    frozen = {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if not is_adapter_param_name(name)
    }
    assert not any(p.requires_grad for p in layer.primary_parameters())
    assert not layer.conv_offset.weight.requires_grad
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[-1].clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(out.square().mean() for out in model(x)).backward()
    assert layer.quad_u.weight.grad.abs().sum() > 0
    optimizer.step()
    with torch.no_grad():
        after = model(x)[-1]
    assert not torch.equal(after, before)
    assert all(
        torch.equal(p, frozen[name]) for name, p in model.named_parameters() if name in frozen
    )


@pytest.mark.parametrize('autocast', [False, True], ids=['fp32', 'fp16'])
def test_saved_activations_as_the_first_order_dcn(autocast):
    """The memory-efficient branch saves only x, the very tensor the DCN
    saves; under fp16 autocast the shared cast even saves one copy less."""
    dcn = ModulatedDeformConv2dPack(16, 16, 3, stride=2, padding=1)
    layer = QuadraticModulatedDeformConv2dPack.from_dcn(copy.deepcopy(dcn), rank=RANK)
    x = torch.randn(2, 16, 12, 12, requires_grad=True)

    def saved(module):
        with torch.autocast('cpu', dtype=torch.float16, enabled=autocast):
            return saved_tensor_bytes(lambda: module(x), ignore=module.parameters())[0]

    if autocast:
        assert saved(layer) < saved(dcn)
    else:
        assert saved(layer) == saved(dcn)
        layer.memory_efficient = False
        assert saved(layer) > saved(dcn)


@pytest.mark.parametrize('autocast', [False, True], ids=['fp32', 'fp16'])
def test_saved_activations_dcn_resnet50(autocast):
    model = dcn_resnet50('DCNv2')
    model.train()
    x = torch.randn(1, 3, 64, 64)

    def saved():
        with torch.autocast('cpu', dtype=torch.float16, enabled=autocast):
            return saved_tensor_bytes(lambda: model(x), ignore=model.parameters())[0]

    first_order = saved()
    inject_quadratic_adapters(model, 'resnet', rank=8)
    assert saved() / first_order <= 1.0


def test_export_fuses_the_dcn_layers():
    model = dcn_resnet50('DCNv2')
    inject_quadratic_adapters(model, 'resnet', rank=RANK)
    randomize_u(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        exported = export_for_inference(model)
        layers = dict(quadratic_layers(exported))
        assert all(layer.fused for layer in layers.values())
        assert isinstance(layers['layer2.0.conv2'], QuadraticModulatedDeformConv2dPack)
        got = exported(x)
    assert max((a - b).abs().max().item() for a, b in zip(got, expected)) <= 1e-4
    assert exported.state_dict().keys() == model.state_dict().keys()
    # A fused DCN layer with U = 0 is the DCN exactly.
    dcn = ModulatedDeformConv2dPack(8, 8, 3, padding=1)
    nn.init.normal_(dcn.conv_offset.weight, std=0.1)
    fused = QuadraticModulatedDeformConv2dPack.from_dcn(dcn).fuse()
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        assert fused.quadratic_term_is_zero and torch.equal(fused(x), dcn(x))
    # drop_zero_adapters swaps only plain convs/linears: the DCN stays fused.
    dropped = export_for_inference(nn.Sequential(fused), drop_zero_adapters=True)
    assert isinstance(dropped[0], QuadraticModulatedDeformConv2dPack)


def test_exported_config_loads_the_training_checkpoint():
    """tools/export.py's form: ExportedQuadraNet builds the QNv2 config with
    every layer fused and loads the training checkpoint strictly."""
    init_default_scope('mmdet')
    qnv2 = dict(
        type='QuadraNetV2',
        targets='resnet',
        adapter=dict(rank=RANK),
        backbone=dict(
            type='ResNet',
            depth=50,
            dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
            stage_with_dcn=(False, True, True, True),
        ),
    )
    trained = MODELS.build(qnv2)
    trained.init_weights()
    randomize_u(trained)
    with torch.no_grad():
        for module in trained.modules():
            if isinstance(module, DeformConv2d):
                module.conv_offset.weight.normal_(std=0.02)
    exported = MODELS.build(dict(type='ExportedQuadraNet', model=qnv2))
    exported.load_state_dict(trained.state_dict(), strict=True)
    layers = dict(quadratic_layers(exported))
    assert all(layer.fused and not layer.quadratic_term_is_zero for layer in layers.values())
    assert isinstance(layers['layer4.0.conv2'], QuadraticModulatedDeformConv2dPack)
    trained.eval()
    exported.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert max((a - b).abs().max().item() for a, b in zip(exported(x), trained(x))) <= 1e-4


def _flops(model: nn.Module) -> int:
    return get_model_complexity_info(
        model, inputs=(torch.randn(1, 3, 64, 64),), show_table=False, show_arch=False
    )['flops']


def _output_sizes(model: nn.Module, kind: type) -> dict:
    """``H_out * W_out`` of each ``kind`` module on a 64x64 input."""
    sizes = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o[0, 0].numel()))
        for name, m in model.named_modules()
        if isinstance(m, kind)
    ]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    return sizes


@pytest.mark.slow  # five traced counts of an R-50: ~30 s on 2 cores
def test_flops_count_the_dcn_and_its_adapter():
    plain = ResNet(depth=50, out_indices=(0, 1, 2, 3))
    plain.eval()
    model = dcn_resnet50('DCNv2')
    # mmengine counts the deformable convs as convs of their geometry: the
    # DCN model costs the plain one plus its offset convs.
    modules = dict(model.named_modules())
    offsets = sum(
        size * modules[name].conv_offset.weight.numel()
        for name, size in _output_sizes(model, ModulatedDeformConv2dPack).items()
    )
    first_order = _flops(model)
    assert first_order == _flops(plain) + offsets > _flops(plain)
    inject_quadratic_adapters(model, 'resnet', rank=RANK, kernel_size=K)
    randomize_u(model)
    layers = dict(quadratic_layers(model))
    adapters = sum(
        size * (2 * RANK * layers[name].in_channels * K * K + RANK * layers[name].out_channels)
        for name, size in _output_sizes(model, QuadraticNeuron).items()
    )
    assert _flops(model) - first_order == adapters
    assert _flops(export_for_inference(model)) == first_order + adapters


def test_layers_that_cannot_take_an_adapter_are_named():
    model = nn.Module()
    model.offsets = DeformConv2d(4, 4, 3, padding=1)  # takes (x, offset)
    with pytest.raises(
        ValueError,
        match=r"'offsets'.*DeformConv2d, not one "
        r'.*nn\.Conv2d, nn\.Linear.*ModulatedDeformConv2dPack',
    ):
        inject_quadratic_adapters(model, [dict(type='offsets')])


class _DCNDetector(BaseModel):
    """A QNv2 R-50-DCNv2 backbone plus a head, trained by a real Runner."""

    def __init__(self):
        super().__init__()
        init_default_scope('mmdet')
        self.backbone = MODELS.build(
            dict(
                type='QuadraNetV2',
                targets='resnet',
                stages=(1, 2, 3),
                adapter=dict(rank=RANK),
                backbone=dict(
                    type='ResNet',
                    depth=50,
                    out_indices=(3,),
                    zero_init_residual=False,
                    dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
                    stage_with_dcn=(False, True, True, True),
                ),
            )
        )
        self.head = nn.Linear(2048, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.head(self.backbone(inputs)[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=((out - targets) ** 2).mean())
        return out


def test_stage_hook_freezes_the_dcn_and_its_offsets_in_stage_one(tmp_path):
    recorder = RecordChanges()
    runner = Runner(
        model=_DCNDetector(),
        work_dir=str(tmp_path),
        **tiny_training(4),
        train_cfg=dict(by_epoch=False, max_iters=2),
        custom_hooks=[dict(type='QuadraticStageHook', switch_iter=1), recorder],
        default_hooks=dict(checkpoint=None),
        default_scope='mmdet',
    )
    runner.train()
    offsets = {n for n, _ in runner.model.named_parameters() if 'conv2.conv_offset' in n}
    dcn = {
        n
        for n, _ in runner.model.named_parameters()
        if n.startswith('backbone.layer4.0.conv2.') and not is_adapter_param_name(n)
    }
    assert len(offsets) == 2 * 13 and len(dcn) == 3
    assert not recorder.changed[1] & (offsets | dcn)  # stage 1
    assert 'backbone.layer4.0.conv2.quad_u.weight' in recorder.changed[1]
    assert recorder.changed[2] >= offsets | dcn  # stage 2
