"""The analytic backward's explicit gradient formulas: each kernel's own derivative,
partial gradient requests, channels-last inputs, frozen adapters, and the backward each
layer chooses by whether its primary term trains (recompute the projections) or is
frozen (keep them).

The full gradcheck matrix (every kernel x every layer kind, memory-efficient on and
off) is ``test_ops.test_gradcheck``.
"""

import pytest
import torch
from torch import nn

from quadra_mm.ops import (
    INTERACTIONS,
    QuadraticConv2d,
    QuadraticLinear,
    build_interaction,
    fuse_projections,
    saved_tensor_bytes,
)

from test_ops import INTERACTION_CFGS, make_layer


@pytest.mark.parametrize('kernel', sorted(INTERACTIONS))
def test_kernel_derivative_matches_autograd(kernel):
    phi = build_interaction(kernel, **INTERACTION_CFGS[kernel])
    a, b = (torch.randn(3, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    grad = torch.randn(3, 5, dtype=torch.float64)
    out = phi(a, b)
    expected = torch.autograd.grad(out, (a, b), grad)
    analytic = phi.backward(a.detach(), b.detach(), out.detach(), grad)
    for got, want in zip(analytic, expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('degree', [1, 3])
def test_poly_derivative_where_ab_is_minus_c(degree):
    """phi / (ab + c) would be 0/0 there; the derivative is finite."""
    phi = build_interaction('poly', degree=degree, c=1.0)
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.5])
    grad_a, grad_b = phi.backward(a, b, phi(a, b), torch.ones(2))
    assert torch.isfinite(grad_a).all() and torch.isfinite(grad_b).all()
    assert grad_a[0] == (-1.0 if degree == 1 else 0.0)


@pytest.mark.parametrize('kind', ['dense_conv', 'depthwise_variant', 'linear'])
def test_partial_gradients(kind):
    """Only the requested gradients are formed, and they equal plain autograd's: input
    without grad (first layer), frozen A/B (a LoRA-like stage), frozen U."""
    _, layer, x = make_layer(kind, 'rbf', dtype=torch.float64)
    for frozen in ((), ('quad_a', 'quad_b'), ('quad_u',), ('weight', 'quad_a')):
        grads = {}
        for memory_efficient in (True, False):
            layer.memory_efficient = memory_efficient
            layer.zero_grad(set_to_none=True)
            for name, param in layer.named_parameters():
                param.requires_grad_(not name.startswith(frozen))
            layer(x).square().sum().backward()
            grads[memory_efficient] = {n: p.grad for n, p in layer.named_parameters()}
        for name, grad in grads[True].items():
            assert (grad is None) == name.startswith(frozen), name
            if grad is not None:
                torch.testing.assert_close(grad, grads[False][name])


def test_channels_last_conv_matches_plain_backward():
    """Channels-last activations take the conv path of the pointwise U (a GEMM there)."""
    conv = nn.Conv2d(8, 8, 3, padding=1).to(memory_format=torch.channels_last)
    layer = QuadraticConv2d.from_conv(
        conv, rank=4, interaction='poly', interaction_cfg=dict(degree=3)
    )
    nn.init.normal_(layer.quad_u.weight, std=0.1)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    grads = {}
    for memory_efficient in (True, False):
        layer.memory_efficient = memory_efficient
        layer.zero_grad()
        x.grad = None
        layer(x).square().sum().backward()
        grads[memory_efficient] = [x.grad, *(p.grad for p in layer.parameters())]
    for on, off in zip(grads[True], grads[False]):
        torch.testing.assert_close(on, off, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kernel', sorted(INTERACTIONS))
def test_autocast_backward_every_kernel(kernel):
    """bf16 autocast: analytic gradients (weights in their fp32 dtype) agree with plain
    autograd through the same casts to bf16 accuracy."""
    linear = nn.Linear(16, 12)
    layer = QuadraticLinear.from_linear(
        linear, rank=4, interaction=kernel, interaction_cfg=INTERACTION_CFGS[kernel]
    )
    nn.init.normal_(layer.quad_u.weight, std=0.3)
    x = torch.randn(4, 16, requires_grad=True)
    grads = {}
    for memory_efficient in (True, False):
        layer.memory_efficient = memory_efficient
        layer.zero_grad()
        x.grad = None
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(x)
        out.float().square().sum().backward()
        grads[memory_efficient] = [x.grad, *(p.grad for p in layer.parameters())]
    for on, off in zip(grads[True], grads[False]):
        assert on.dtype == off.dtype == torch.float32
        torch.testing.assert_close(on, off, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    'stride,dilation,size', [(2, 2, (9, 8)), (4, 2, (11, 13)), ((2, 1), 2, (8, 7)), (2, 3, (9, 9))]
)
def test_strided_adapter_on_subsampled_input(stride, dilation, size):
    """A/B read only every gcd(stride, dilation, padding)-th row/column of x; the layer
    convolves those alone and scatters their gradient back. Output and gradients equal
    the adapter's own modules on the full input (gcd 2, 2 in one dim, 1: no subsampling)."""
    conv = nn.Conv2d(3, 4, 3, stride=stride, padding=1).double()
    layer = QuadraticConv2d.from_conv(conv, rank=2, dilation=dilation)
    nn.init.normal_(layer.quad_u.weight)
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    expected = conv(x) + layer.scale * layer.quad_u(layer.quad_a(x) * layer.quad_b(x))
    grad = torch.randn_like(expected)
    params = [x, *layer.parameters()]
    want = torch.autograd.grad(expected, params, grad)
    for memory_efficient in (True, False):
        layer.memory_efficient = memory_efficient
        out = layer(x)
        torch.testing.assert_close(out, expected)
        for got, ref in zip(torch.autograd.grad(out, params, grad), want):
            torch.testing.assert_close(got, ref)


def freeze_primary(layer: nn.Module, frozen: bool = True) -> None:
    """Phase 1 of stage training for one layer: ``L``'s weight and bias frozen."""
    for param in layer.primary_parameters():
        param.requires_grad_(not frozen)


@pytest.mark.parametrize('frozen', [False, True], ids=['primary_trains', 'primary_frozen'])
@pytest.mark.parametrize(
    'kind', ['dense_conv', 'depthwise_variant', 'strided_conv', 'reflect_padded_conv', 'linear']
)
def test_chosen_backward_gradcheck(kind, frozen):
    """Default ``memory_efficient=None``: the projections are recomputed while ``L``
    trains and kept while it is frozen; either backward equals the numerical gradient."""
    _, layer, x = make_layer(kind, 'poly', memory_efficient=None, dtype=torch.float64)
    freeze_primary(layer, frozen)
    assert layer._keeps_projection() == frozen
    params = [p for p in layer.parameters() if p.requires_grad]
    assert torch.autograd.gradcheck(lambda x, *_: layer(x), (x.requires_grad_(), *params))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('kind', ['conv', 'linear'])
def test_kept_projection_under_autocast(kind, dtype):
    """CPU autocast with activations in the hundreds (the range scale ``c > 1`` on the
    large half of the batch): the kept-projection backward (``L`` frozen) gives the
    gradients of plain autograd through the same casts, and those of the recompute."""
    torch.manual_seed(0)
    if kind == 'conv':
        layer = QuadraticConv2d.from_conv(nn.Conv2d(16, 16, 3, padding=1), rank=4)
        x = torch.randn(2, 16, 10, 10)
    else:
        layer = QuadraticLinear.from_linear(nn.Linear(16, 12), rank=4)
        x = torch.randn(2, 5, 16)
    x[1] *= 300
    nn.init.normal_(layer.quad_u.weight, std=1e-2)
    freeze_primary(layer)
    grads = {}
    for memory_efficient in (None, True, False):
        layer.memory_efficient = memory_efficient
        layer.zero_grad()
        leaf = x.clone().requires_grad_()
        with torch.autocast('cpu', dtype=dtype):
            w_ab = fuse_projections(layer.quad_a.weight, layer.quad_b.weight, False)
            scale = layer._projection(leaf.to(dtype), w_ab)[1]
            out = layer(leaf)
        assert out.dtype == dtype and torch.isfinite(out).all()
        # (A squared loss of these outputs would overflow fp16 weight gradients, in L too:
        # GradScaler's business, not the backward's.)
        out.float().sum().backward()
        grads[memory_efficient] = [leaf.grad, *(p.grad for p in layer.adapter_parameters())]
    assert scale.max() > 1 and scale.min() == 1
    for other in (True, False):
        for kept, want in zip(grads[None], grads[other]):
            assert kept.dtype == want.dtype == torch.float32 and torch.isfinite(kept).all()
            assert (kept - want).norm() <= 1e-2 * want.norm()


@pytest.mark.parametrize('autocast', [False, True])
def test_saved_bytes_by_regime(autocast):
    """Beside what ``L`` saves: nothing while ``L`` trains (the recompute); the range-scaled
    ``2r``-channel projection and its per-image scale while ``L`` is frozen, less than
    plain autograd keeps (``x`` is ``L``'s saved tensor either way, one shared cast)."""
    conv = nn.Conv2d(16, 16, 3, padding=1)
    layer = QuadraticConv2d.from_conv(conv, rank=4)
    x = torch.randn(2, 16, 12, 12, requires_grad=True)

    def measure(module, memory_efficient=None):
        layer.memory_efficient = memory_efficient
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            return saved_tensor_bytes(lambda: module(x), ignore=module.parameters())[0]

    first_order = measure(conv)
    assert measure(layer) == measure(layer, True) == first_order
    freeze_primary(layer)
    assert measure(conv) == first_order  # a frozen conv still saves its input
    element = 2 if autocast else 4
    projection = 2 * 2 * layer.rank * 12 * 12 * element + 2 * 4  # (N, 2r, H, W) and fp32 c
    assert measure(layer) == first_order + projection
    assert measure(layer, True) == first_order
    assert measure(layer) < measure(layer, False)
