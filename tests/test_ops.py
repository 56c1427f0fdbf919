"""The quadratic neuron: math, initialisation, interactions, memory-efficient backward."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from quadra_mm.ops import (
    INTERACTIONS,
    QuadraticConv2d,
    QuadraticLinear,
    QuadraticNeuron,
    build_interaction,
    is_adapter_param_name,
    saved_tensor_bytes,
)

# name -> (layer factory, adapter options, input shape)
LAYERS = {
    'dense_conv': (lambda: nn.Conv2d(3, 4, 3, padding=1), {}, (1, 3, 5, 5)),
    'depthwise_variant': (
        lambda: nn.Conv2d(3, 6, 3, padding=1, groups=3),
        dict(depthwise=True),
        (1, 3, 5, 5),
    ),
    'strided_conv': (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), {}, (1, 3, 6, 5)),
    'dilated_conv': (lambda: nn.Conv2d(3, 4, 3, padding=2, dilation=2), {}, (1, 3, 5, 5)),
    'depthwise_conv': (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4), {}, (1, 4, 5, 5)),
    'reflect_padded_conv': (
        lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode='reflect'),
        {},
        (1, 3, 5, 5),
    ),
    'linear': (lambda: nn.Linear(5, 4), {}, (1, 3, 5)),
}
INTERACTION_CFGS = {
    'quadratic': {},
    'linear': {},
    'rbf': dict(sigma=1.5),
    'poly': dict(degree=2, c=0.5),
}


def make_layer(
    kind: str,
    interaction: str = 'quadratic',
    memory_efficient: bool = True,
    dtype: torch.dtype = torch.float32,
    randomize_u: bool = True,
):
    factory, options, shape = LAYERS[kind]
    original = factory().to(dtype)
    wrap = (
        QuadraticLinear.from_linear
        if isinstance(original, nn.Linear)
        else QuadraticConv2d.from_conv
    )
    layer = wrap(
        original,
        rank=2,
        interaction=interaction,
        interaction_cfg=INTERACTION_CFGS[interaction],
        memory_efficient=memory_efficient,
        name=kind,
        **options,
    )
    if randomize_u:
        nn.init.normal_(layer.quad_u.weight)
    return original, layer, torch.randn(shape, dtype=dtype)


def test_interactions():
    a, b = torch.randn(2, 7), torch.randn(2, 7)
    torch.testing.assert_close(build_interaction('quadratic')(a, b), a * b)
    torch.testing.assert_close(
        build_interaction('rbf', sigma=2.0)(a, b), torch.exp(-((a - b) ** 2) / 8)
    )
    torch.testing.assert_close(build_interaction('poly', degree=3, c=0.5)(a, b), (a * b + 0.5) ** 3)
    torch.testing.assert_close(build_interaction('linear')(a, b), a + b)
    assert set(INTERACTIONS) == {'quadratic', 'linear', 'rbf', 'poly'}


def test_interaction_errors():
    with pytest.raises(ValueError, match=r"'cubic'.*\['linear', 'poly', 'quadratic', 'rbf'\]"):
        build_interaction('cubic')
    with pytest.raises(ValueError, match=r"\['gamma'\]"):
        build_interaction('rbf', gamma=1.0)
    with pytest.raises(ValueError, match=r"\['sigma'\]"):
        build_interaction('quadratic', sigma=1.0)
    with pytest.raises(ValueError, match='sigma'):
        build_interaction('rbf', sigma=0.0)
    with pytest.raises(ValueError, match='head.fc'):
        QuadraticLinear.from_linear(nn.Linear(3, 3), interaction='cubic', name='head.fc')


def test_interaction_under_its_old_name():
    """``kernel=`` / ``kernel_cfg=`` (the configs' spelling) still work; both names of
    one argument at once is an error naming the layer."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    old = QuadraticConv2d.from_conv(conv, kernel='poly', kernel_cfg=dict(degree=3))
    new = QuadraticConv2d.from_conv(conv, interaction='poly', interaction_cfg=dict(degree=3))
    assert old.interaction_name == new.interaction_name == 'poly'
    assert old.interaction.degree == new.interaction.degree == 3
    assert QuadraticLinear.from_linear(nn.Linear(3, 3), kernel='rbf').interaction_name == 'rbf'
    assert QuadraticConv2d.from_conv(conv).interaction_name == 'quadratic'
    with pytest.raises(ValueError, match=r'stem\.conv.*`kernel` is the old name of `interaction`'):
        QuadraticConv2d.from_conv(conv, interaction='rbf', kernel='rbf', name='stem.conv')
    with pytest.raises(ValueError, match='`kernel_cfg` is the old name of `interaction_cfg`'):
        QuadraticLinear.from_linear(nn.Linear(3, 3), interaction_cfg={}, kernel_cfg={})


@pytest.mark.parametrize('kernel', sorted(INTERACTIONS))
@pytest.mark.parametrize('kind', sorted(LAYERS))
def test_function_preserved_at_init(kind, kernel):
    original, layer, x = make_layer(kind, kernel, randomize_u=False)
    assert layer.weight is original.weight and layer.bias is original.bias
    assert torch.equal(layer(x), original(x))
    with torch.no_grad():
        assert torch.equal(layer(x), original(x))


def test_attributes_and_sharing():
    conv = nn.Conv2d(4, 8, 3, padding=1, bias=False).double()
    layer = QuadraticConv2d.from_conv(conv, rank=4, alpha=8)
    assert layer.bias is None and layer.weight is conv.weight
    assert layer.quad_a.weight.dtype == torch.float64
    assert (layer.rank, layer.scale, layer.interaction_name) == (4, 2.0, 'quadratic')
    assert layer.memory_efficient is None and not layer.depthwise and layer.stage is None
    assert isinstance(layer, QuadraticNeuron) and isinstance(layer, nn.Conv2d)
    assert not layer.quad_u.weight.any()
    assert len(list(layer.adapter_parameters())) == 3
    assert set(layer.state_dict()) == {'weight', 'quad_a.weight', 'quad_b.weight', 'quad_u.weight'}
    depthwise = QuadraticConv2d.from_conv(nn.Conv2d(4, 8, 7, padding=3, groups=4), depthwise=True)
    assert (depthwise.rank, depthwise.scale, depthwise.quad_u.groups) == (4, 1.0, 4)
    assert QuadraticLinear.from_linear(nn.Linear(4, 4), rank=4).scale == 1.0


def test_reset_adapter_and_stats():
    original, layer, x = make_layer('dense_conv')
    layer.record_stats = True
    y = layer(x)
    term_norm, primary_norm = layer.last_stats
    assert term_norm.dim() == 0 and not term_norm.requires_grad
    torch.testing.assert_close(primary_norm, original(x).norm())
    torch.testing.assert_close(term_norm, layer.quadratic_term(x).norm())
    torch.testing.assert_close(y, original(x) + layer.quadratic_term(x))
    a_before = layer.quad_a.weight.clone()
    layer.reset_adapter()
    assert not layer.quad_u.weight.any() and not torch.equal(layer.quad_a.weight, a_before)
    layer(x)
    assert layer.last_stats[0] == 0


def test_quadratic_term_math():
    """The fused single-conv branch equals the textbook s * U(A(x) * B(x))."""
    for kind in ('dense_conv', 'depthwise_variant', 'strided_conv', 'linear'):
        _, layer, x = make_layer(kind)
        a, b, u = layer.quad_a, layer.quad_b, layer.quad_u
        torch.testing.assert_close(layer.quadratic_term(x), layer.scale * u(a(x) * b(x)))


@pytest.mark.parametrize(
    'padding,kernel_size,dilation',
    [('same', 3, 2), ('valid', 3, 2), ((1, 2), 3, 1), (3, 5, 1), ((1, 2), 3, (2, 1))],
)
def test_output_shape_kept(padding, kernel_size, dilation):
    conv = nn.Conv2d(3, 4, (3, 5), padding=padding)
    layer = QuadraticConv2d.from_conv(conv, rank=2, kernel_size=kernel_size, dilation=dilation)
    for size in ((7, 9), (8, 10)):
        x = torch.randn(1, 3, *size)
        assert layer.quadratic_term(x).shape == conv(x).shape


def test_layer_errors():
    with pytest.raises(ValueError, match=r'backbone\.layer1\.0\.conv2.*kernel_size=\(2, 2\)'):
        QuadraticConv2d.from_conv(
            nn.Conv2d(3, 3, 3, padding=1), kernel_size=2, dilation=1, name='backbone.layer1.0.conv2'
        )
    with pytest.raises(ValueError, match=r'stem\.conv'):
        QuadraticConv2d.from_conv(nn.Conv2d(3, 3, 7), kernel_size=3, dilation=1, name='stem.conv')
    with pytest.raises(ValueError, match=r'odd.*padding=same'):
        QuadraticConv2d.from_conv(
            nn.Conv2d(3, 3, 3, padding='same'), kernel_size=2, dilation=1, name='odd'
        )
    with pytest.raises(ValueError, match=r'blocks\.0\.conv.*rank must be > 0'):
        QuadraticConv2d.from_conv(nn.Conv2d(3, 3, 3, padding=1), rank=0, name='blocks.0.conv')
    with pytest.raises(ValueError, match=r'ffn\.fc.*rank'):
        QuadraticLinear.from_linear(nn.Linear(3, 3), rank=-1, name='ffn.fc')
    with pytest.raises(ValueError, match=r'dw.*multiple of in_channels'):
        QuadraticConv2d.from_conv(nn.Conv2d(4, 6, 3, padding=1), depthwise=True, name='dw')


def test_is_adapter_param_name():
    assert is_adapter_param_name('stages.0.0.depthwise_conv.quad_a.weight')
    assert is_adapter_param_name('quad_u.weight')
    assert not is_adapter_param_name('stages.0.0.depthwise_conv.weight')
    assert not is_adapter_param_name('head.squad_net.weight')


def _grad_inputs(layer, x):
    return (x, *(p for _, p in layer.named_parameters()))


@pytest.mark.parametrize('memory_efficient', [True, False])
@pytest.mark.parametrize('kernel', sorted(INTERACTIONS))
@pytest.mark.parametrize('kind', sorted(LAYERS))
def test_gradcheck(kind, kernel, memory_efficient):
    _, layer, x = make_layer(kind, kernel, memory_efficient, torch.float64)
    names = [name for name, _ in layer.named_parameters()]

    def fn(x, *params):
        return functional_call(layer, dict(zip(names, params)), (x,))

    inputs = [t.detach().requires_grad_() for t in _grad_inputs(layer, x)]
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize('kernel', sorted(INTERACTIONS))
@pytest.mark.parametrize('kind', sorted(LAYERS))
def test_memory_efficient_same_gradients(kind, kernel):
    _, layer, x = make_layer(kind, kernel)
    x.requires_grad_()
    grads = {}
    for memory_efficient in (True, False):
        layer.memory_efficient = memory_efficient
        layer.zero_grad()
        x.grad = None
        out = layer(x)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
        grads[memory_efficient] = [t.grad.clone() for t in _grad_inputs(layer, x)]
    # The same math as autograd's, in another order of float operations.
    for on, off in zip(grads[True], grads[False]):
        torch.testing.assert_close(on, off, rtol=1e-5, atol=1e-6)


def test_memory_efficient_autocast_backward():
    """Backward outside the autocast region recomputes with the forward's casts."""
    _, layer, x = make_layer('dense_conv')
    grads = {}
    for memory_efficient in (True, False):
        layer.memory_efficient = memory_efficient
        layer.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(x)
        assert out.dtype == torch.bfloat16
        out.float().square().sum().backward()
        grads[memory_efficient] = [p.grad for p in layer.parameters()]
    for on, off in zip(grads[True], grads[False]):
        assert on.dtype == torch.float32
        torch.testing.assert_close(on, off)


@pytest.mark.parametrize('autocast', [False, True])
def test_saved_bytes_only_adapter_weights(autocast):
    """Memory-efficient: beyond the first-order layer, only the (parameter) adapter
    weights are saved, also under autocast, where L and the branch share one cast of x."""
    conv = nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(2, 16, 12, 12, requires_grad=True)
    layer = QuadraticConv2d.from_conv(conv, rank=4)

    def measure(module, ignore=()):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            return saved_tensor_bytes(lambda: module(x), ignore)[0]

    first_order = measure(conv)
    adapter_bytes = sum(p.numel() * p.element_size() for p in layer.adapter_parameters())
    assert measure(layer) == first_order + adapter_bytes
    assert measure(layer, ignore=layer.parameters()) == measure(conv, ignore=conv.parameters())
    layer.memory_efficient = False
    assert measure(layer) > first_order + adapter_bytes


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_cuda_autocast_channels_last(dtype):
    """On CUDA backward runs on the autograd device thread: the recompute must still
    see the forward's autocast state; channels-last inputs share one cast too."""
    conv = nn.Conv2d(32, 32, 3, padding=1).cuda().to(memory_format=torch.channels_last)
    layer = QuadraticConv2d.from_conv(conv, rank=4)
    nn.init.normal_(layer.quad_u.weight, std=0.1)
    x = torch.randn(4, 32, 16, 16, device='cuda').contiguous(memory_format=torch.channels_last)
    x.requires_grad_()

    def run(module):
        with torch.autocast('cuda', dtype=dtype):
            saved, out = saved_tensor_bytes(lambda: module(x))
        assert out.dtype == dtype
        out.float().square().sum().backward()
        return saved

    first_order = run(conv)
    adapter_bytes = sum(p.numel() * p.element_size() for p in layer.adapter_parameters())
    grads = {}
    for memory_efficient in (True, False):
        layer.memory_efficient = memory_efficient
        layer.zero_grad()
        x.grad = None
        saved = run(layer)
        if memory_efficient:
            assert saved == first_order + adapter_bytes
        grads[memory_efficient] = [x.grad, *(p.grad for p in layer.parameters())]
    for on, off in zip(grads[True], grads[False]):
        torch.testing.assert_close(on, off, rtol=2e-2, atol=1e-3)
