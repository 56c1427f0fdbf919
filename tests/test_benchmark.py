"""tools/benchmarking's frozen regime (issue 31): what trains, LoRA as PEFT writes it, and
the backward each adapted variant runs."""

import argparse
import os.path as osp
import sys
import time

import torch
from torch import nn

from quadra_mm.adapters import quadratic_layers

from helpers import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
from benchmarking.lora import LoRAConv2d  # noqa: E402
from benchmarking.regimes import Bench  # noqa: E402

TARGETS = [dict(type=r'\d+\.conv')]


class Block(nn.Module):
    def __init__(self, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x)).relu()


def tiny_backbone() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 1), Block(), Block(2))


def test_lora_as_peft_writes_it():
    base = nn.Conv2d(8, 6, 3, stride=2, padding=2, dilation=2)
    lora = LoRAConv2d(base, rank=4)
    a = lora.lora_A
    assert (a.in_channels, a.out_channels, a.kernel_size, a.stride, a.padding, a.dilation) == (
        8,
        4,
        base.kernel_size,
        base.stride,
        base.padding,
        base.dilation,
    )
    assert lora.lora_B.kernel_size == (1, 1) and not lora.lora_B.weight.any()
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(lora(x), base(x))


def test_frozen_regime_variants():
    """Frozen regime: only adapters (quadratic or LoRA) and norms train; the adapted model
    keeps its projections for backward, the recompute variant does not, and keeping them
    costs saved bytes only beside the recompute's."""
    args = argparse.Namespace(
        device='cpu', batch_size=2, image_size=16, repeats=1, warmup=0, clock_fn=time.process_time
    )
    bench = Bench(tiny_backbone, TARGETS, args, 'fp32')
    bench.add_frozen_regime()
    assert {
        'first_order_frozen',
        'adapted_frozen',
        'adapted_frozen_recompute',
        'lora_frozen',
        'lora_2r_frozen',
    } <= set(bench.models)
    for name in ('first_order_frozen', 'adapted_frozen', 'lora_frozen', 'lora_2r_frozen'):
        trainable = {n for n, p in bench.models[name].named_parameters() if p.requires_grad}
        assert trainable == {
            n
            for n, _ in bench.models[name].named_parameters()
            if '.bn.' in n or 'quad_' in n or 'lora_' in n
        }, name
    assert all(
        layer._keeps_projection() for _, layer in quadratic_layers(bench.models['adapted_frozen'])
    )
    assert not any(
        layer._keeps_projection()
        for _, layer in quadratic_layers(bench.models['adapted_frozen_recompute'])
    )
    saved = bench.saved_bytes()
    # Per adapted layer, fp32: the (N, 2r, H, W) projection (16x16, then 8x8 after the
    # stride) and its per-image range scale.
    projections = sum(2 * 2 * 8 * size * size * 4 + 2 * 4 for size in (16, 8))
    assert saved['adapted_frozen'] == saved['adapted_frozen_recompute'] + projections
    # LoRA of twice the rank keeps as many channels (its A(x), for B's weight gradient):
    # the kept projection costs it only the range scales.
    assert saved['adapted_frozen'] == saved['lora_2r_frozen'] + 2 * (2 * 4)
    flops = bench.flops()
    assert flops['adapted_frozen_train'] < flops['adapted_frozen_recompute_train']
    assert flops['first_order_frozen_train'] < flops['first_order_train']
