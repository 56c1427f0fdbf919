"""The fused inference kernel (phi + U + residual add): Triton's interpreter on CPU,
and the exported model on CUDA (skipped without a GPU)."""

import os
import subprocess
import sys

import pytest
import torch
from mmpretrain.models import ConvNeXt, VisionTransformer
from torch import nn

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers
from quadra_mm.deploy import export_for_inference

from helpers import ROOT, TINY_CONVNEXT

triton = pytest.importorskip('triton')

# Runs in a fresh interpreter: TRITON_INTERPRET must be set before triton is imported.
INTERPRETED_CHECK = r"""
import torch
import torch.nn.functional as F
from quadra_mm.ops import fused_quadratic_term_add_
from quadra_mm.ops import build_interaction, pointwise_conv

torch.manual_seed(0)
kernels = [('quadratic', {}), ('linear', {}), ('rbf', dict(sigma=1.5)),
           ('poly', dict(degree=3, c=0.5))]
for name, cfg in kernels:
    phi = build_interaction(name, **cfg)
    # rank 3 (padded to 4 in the kernel), 20 outputs (two output blocks), 35 pixels.
    for memory_format in (torch.contiguous_format, torch.channels_last):
        y = torch.randn(2, 20, 5, 7).contiguous(memory_format=memory_format)
        ab = torch.randn(2, 6, 5, 7).contiguous(memory_format=memory_format)
        u = torch.randn(20, 3, 1, 1)
        a, b = ab.chunk(2, 1)
        expected = y + pointwise_conv(phi(a, b), u)
        out = fused_quadratic_term_add_(y, ab, u, phi)
        assert out is y
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)
    rows, ab, u = torch.randn(9, 20), torch.randn(9, 6), torch.randn(20, 3)
    a, b = ab.chunk(2, -1)
    expected = rows + F.linear(phi(a, b), u)
    torch.testing.assert_close(fused_quadratic_term_add_(rows, ab, u, phi), expected, rtol=1e-5,
                               atol=1e-4)
    # With a range scale c (per image; per row for tokens): y + c U(phi(a / c, b / c)).
    y, ab, u = torch.randn(2, 20, 5, 7), 300 * torch.randn(2, 6, 5, 7), torch.randn(20, 3, 1, 1)
    scale = torch.tensor([1.0, 8.0]).view(2, 1, 1, 1)
    a, b = (ab / scale).chunk(2, 1)
    expected = y + pointwise_conv(phi(a, b), u, sample_scale=scale)
    torch.testing.assert_close(fused_quadratic_term_add_(y, ab, u, phi, scale), expected,
                               rtol=1e-4, atol=1e-2)
    rows, ab, u = torch.randn(9, 20), 300 * torch.randn(9, 6), torch.randn(20, 3)
    scale = 2.0 ** torch.arange(9.0).view(9, 1)
    a, b = (ab / scale).chunk(2, -1)
    expected = rows + F.linear(phi(a, b), u) * scale
    torch.testing.assert_close(fused_quadratic_term_add_(rows, ab, u, phi, scale), expected,
                               rtol=1e-4, atol=1e-2)
print('interpreted kernel ok')
"""


def test_triton_kernel_interpreted_on_cpu():
    env = dict(os.environ, TRITON_INTERPRET='1')
    result = subprocess.run(
        [sys.executable, '-c', INTERPRETED_CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert 'interpreted kernel ok' in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('kernel', ['quadratic', 'rbf', 'poly'])
@pytest.mark.parametrize('autocast', [False, True])
def test_exported_cuda_matches_adapted(kernel, autocast):
    models = {
        'convnext': (ConvNeXt(arch=TINY_CONVNEXT), 'convnext', torch.randn(2, 3, 64, 64)),
        'vit': (
            VisionTransformer(
                arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                img_size=32,
                patch_size=8,
            ),
            'vit',
            torch.randn(2, 3, 32, 32),
        ),
    }
    for model, preset, x in models.values():
        model = model.cuda().eval()
        inject_quadratic_adapters(model, preset, rank=8, interaction=kernel)
        for _, layer in quadratic_layers(model):
            nn.init.normal_(layer.quad_u.weight, std=0.1)
        exported = export_for_inference(model)
        assert all(
            layer.fused and not layer.quadratic_term_is_zero
            for _, layer in quadratic_layers(exported)
        )
        x = x.cuda()
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x = x.contiguous(memory_format=memory_format)
            with (
                torch.inference_mode(),
                torch.autocast('cuda', dtype=torch.bfloat16, enabled=autocast),
            ):
                expected, out = model(x), exported(x)
            tolerance = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-4, atol=1e-4)
            for e, o in zip(expected, out):
                torch.testing.assert_close(o.float(), e.float(), **tolerance)
