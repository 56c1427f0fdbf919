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
        cfg = dict(
            type='QuadraNetV2',
            backbone=cfg,
            targets='resnet',
            adapter=dict(rank=RANK, kernel_size=K, dilation=2),
        )
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    # Eval mode, as the exported form (mmengine counts train-mode BN as 5
    # FLOPs per element, eval-mode BN as 2).
    model.eval()  # mmpretrain's ResNet.train() returns None
    return model


def _mmengine_flops(model: torch.nn.Module) -> int:
    # As get_flops.py: grad enabled, parameters requiring grad.
    inputs = (torch.randn(1, 3, SIZE, SIZE),)
    return get_model_complexity_info(model, inputs=inputs, show_table=False, show_arch=False)[
        'flops'
    ]


def _adapter_hand_count(model: torch.nn.Module) -> int:
    """Multiply-adds of A, B (k x k, in -> r) and U (1x1, r -> out) at each
    quadratic layer's output resolution."""
    sizes = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o.shape))
        for name, layer in quadratic_layers(model)
    ]
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


def test_benchmark_pruned_rows_count_what_they_drop():
    """tools/benchmark_adapters.py's pruned placements (issue 18): the per-adapter
    FLOPs add up, each row's exported model costs the first-order FLOPs plus the
    adapters it keeps, the budget row meets its budget with the fewest adapters off."""
    import argparse
    import importlib.util
    import os.path as osp
    import time

    path = osp.join(
        osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'benchmark_adapters.py'
    )
    spec = importlib.util.spec_from_file_location('benchmark_adapters', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(
        device='cpu',
        batch_size=1,
        image_size=32,
        repeats=1,
        warmup=0,
        clock_fn=time.process_time,
        dtype=['fp32'],
    )
    builder, targets = bench.ZOOS['mmpretrain']['ResNet-50']
    rows = {row['pruned']: row for row in bench.pruned_rows('ResNet-50', builder, targets, args)}
    assert list(rows) == ['none'] + [label for label, _ in bench.PRUNED_SETTINGS]

    measured = bench.Bench(builder, targets, args, 'fp32')
    flops = bench.adapter_forward_flops(measured.models['adapted'], measured.x)
    f0 = bench.forward_flops(measured.models['first_order'], measured.x)
    assert len(flops) == 16 and all(f > 0 for f in flops.values())
    assert f0 + sum(flops.values()) == bench.forward_flops(measured.models['adapted'], measured.x)
    by_cost = sorted(flops.values(), reverse=True)

    def ratio(row):
        return float(row['FLOPs fwd'].rstrip('×'))

    for label, off in (('none', 0), ('25 %', 4), ('50 %', 8)):
        assert rows[label]['adapters off'] == f'{off} of 16'
        assert ratio(rows[label]) == pytest.approx((f0 + sum(by_cost[off:])) / f0, abs=5e-4)
    budget = rows['<= 1.02x FLOPs']
    off = int(budget['adapters off'].split()[0])
    assert ratio(budget) <= 1.02 < (f0 + sum(by_cost[off - 1 :])) / f0
    assert all(row['infer (exported)'].endswith('×') for row in rows.values())
