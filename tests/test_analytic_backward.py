"""The memory-efficient backward's explicit gradient formulas: each kernel's own
derivative, partial gradient requests, channels-last inputs, frozen adapters.

The full gradcheck matrix (every kernel x every layer kind, memory-efficient on and
off) is ``test_ops.test_gradcheck``.
"""
import pytest
import torch
from torch import nn

from quadra_mm.ops import KERNELS, QuadraticConv2d, QuadraticLinear, build_kernel

from test_ops import KERNEL_CFGS, make_layer


@pytest.mark.parametrize('kernel', sorted(KERNELS))
def test_kernel_derivative_matches_autograd(kernel):
    phi = build_kernel(kernel, **KERNEL_CFGS[kernel])
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
    phi = build_kernel('poly', degree=degree, c=1.0)
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.5])
    grad_a, grad_b = phi.backward(a, b, phi(a, b), torch.ones(2))
    assert torch.isfinite(grad_a).all() and torch.isfinite(grad_b).all()
    assert grad_a[0] == (-1.0 if degree == 1 else 0.0)


@pytest.mark.parametrize('kind', ['dense_conv', 'depthwise_variant', 'linear'])
def test_partial_gradients(kind):
    """Only the requested gradients are formed, and they equal plain autograd's: input
    without grad (first layer), frozen A/B (a LoRA-like stage), frozen U."""
    _, layer, x = make_layer(kind, 'rbf', dtype=torch.float64)
    for frozen in ((), ('quad_a', 'quad_b'), ('quad_u', ), ('weight', 'quad_a')):
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
    layer = QuadraticConv2d.from_conv(conv, rank=4, kernel='poly', kernel_cfg=dict(degree=3))
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


@pytest.mark.parametrize('kernel', sorted(KERNELS))
def test_autocast_backward_every_kernel(kernel):
    """bf16 autocast: analytic gradients (weights in their fp32 dtype) agree with plain
    autograd through the same casts to bf16 accuracy."""
    linear = nn.Linear(16, 12)
    layer = QuadraticLinear.from_linear(linear, rank=4, kernel=kernel,
                                        kernel_cfg=KERNEL_CFGS[kernel])
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


@pytest.mark.parametrize('stride,dilation,size', [
    (2, 2, (9, 8)), (4, 2, (11, 13)), ((2, 1), 2, (8, 7)), (2, 3, (9, 9))])
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
