"""mmengine's complexity analysis (what mmdet's get_flops.py runs) counts the
quadratic adapters: equal to the hand count on an adapted ResNet-18, the same
for the exported form, within 5 % of torch's FlopCounterMode."""
import pytest
import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.registry import MODELS, init_default_scope
from torch.utils.flop_counter import FlopCounterMode

import quadra_mm  # noqa: F401
from quadra_mm.adapters import quadratic_layers
from quadra_mm.deploy import export_for_inference

SIZE = 64
RANK, K = 8, 3


def _resnet18(adapted: bool) -> torch.nn.Module:
    init_default_scope('mmpretrain')
    cfg = dict(type='ResNet', depth=18)
    if adapted:
        cfg = dict(type='QuadraNetV2', backbone=cfg, targets='resnet',
                   adapter=dict(rank=RANK, kernel_size=K, dilation=2))
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    # Eval mode, as the exported form (mmengine counts train-mode BN as 5
    # FLOPs per element, eval-mode BN as 2).
    model.eval()  # mmpretrain's ResNet.train() returns None
    return model


def _mmengine_flops(model: torch.nn.Module) -> int:
    # As get_flops.py: grad enabled, parameters requiring grad.
    inputs = (torch.randn(1, 3, SIZE, SIZE), )
    return get_model_complexity_info(model, inputs=inputs, show_table=False,
                                     show_arch=False)['flops']


def _adapter_hand_count(model: torch.nn.Module) -> int:
    """Multiply-adds of A, B (k x k, in -> r) and U (1x1, r -> out) at each
    quadratic layer's output resolution."""
    sizes = {}
    hooks = [layer.register_forward_hook(
        lambda m, i, o, name=name: sizes.__setitem__(name, o.shape))
        for name, layer in quadratic_layers(model)]
    with torch.no_grad():
        model(torch.randn(1, 3, SIZE, SIZE))
    for hook in hooks:
        hook.remove()
    total = 0
    for name, layer in quadratic_layers(model):
        _, out, h, w = sizes[name]
        total += h * w * (2 * RANK * layer.in_channels * K * K + RANK * out)
    return total


@pytest.fixture(scope='module')
def adapted():
    model = _resnet18(adapted=True)
    with torch.no_grad():  # a trained-looking U, so export keeps every layer
        for _, layer in quadratic_layers(model):
            layer.quad_u.weight.normal_(std=0.01)
    return model


def test_adapter_flops_are_counted_as_by_hand(adapted):
    first_order = _mmengine_flops(_resnet18(adapted=False))
    counted = _mmengine_flops(adapted)
    assert counted - first_order == _adapter_hand_count(adapted) > 0
    # Traced without grad (inference) too.
    with torch.no_grad():
        assert _mmengine_flops(adapted) == counted


def test_exported_form_is_counted_the_same(adapted):
    exported = export_for_inference(adapted)
    assert all(layer.fused for _, layer in quadratic_layers(exported))
    assert _mmengine_flops(exported) == _mmengine_flops(adapted)


def test_exported_zero_adapters_cost_nothing():
    """A fused layer whose U is zero skips its branch: the count falls to L's."""
    exported = export_for_inference(_resnet18(adapted=True))
    assert _mmengine_flops(exported) == _mmengine_flops(_resnet18(adapted=False))


@pytest.mark.parametrize('form', ['adapted', 'exported'])
def test_agrees_with_torch_flop_counter(adapted, form):
    model = adapted if form == 'adapted' else export_for_inference(adapted)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, SIZE, SIZE))
    # torch counts a multiply-add as 2 FLOPs, mmengine as 1.
    torch_macs = counter.get_total_flops() / 2
    assert abs(_mmengine_flops(model) / torch_macs - 1) <= 0.05
