"""torch.compile of adapted mmpretrain backbones: no graph break at any quadratic layer
(training with the memory-efficient backward on and off, with the primary weights frozen,
eval, exported), and compiled forward and gradients equal to eager ones.

``torch._dynamo.explain`` traces the memory-efficient Function's backward together
with its forward; a backward that re-enters autograd (``torch.autograd.grad``) breaks
the graph twice per adapter, which is what these tests would catch.
"""

import copy

import pytest
import torch
from mmcv.cnn.bricks import DropPath
from mmpretrain.models import ConvNeXt, ResNet, VisionTransformer
from torch import nn

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers
from quadra_mm.deploy import export_for_inference

from helpers import TINY_CONVNEXT


def _vit() -> nn.Module:
    model = VisionTransformer(
        arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
        img_size=32,
        patch_size=8,
    )
    # mmpretrain gives each block's DropPath a numpy float (np.linspace), which dynamo
    # traces as a tensor: `drop_prob == 0.` in mmcv's drop_path then breaks the graph
    # of the first-order ViT too. A Python float keeps the test about the adapters.
    for module in model.modules():
        if isinstance(module, DropPath):
            module.drop_prob = float(module.drop_prob)
    return model


# name -> (builder, preset, input shape); tiny archs, 32 px, so dynamo traces fast.
BACKBONES = {
    'convnext': (
        lambda: ConvNeXt(arch=TINY_CONVNEXT, drop_path_rate=0.0),
        'convnext',
        (2, 3, 32, 32),
    ),
    'resnet': (
        lambda: ResNet(depth=18, stem_channels=8, base_channels=8),
        'resnet',
        (2, 3, 32, 32),
    ),
    'vit': (_vit, 'vit', (2, 3, 32, 32)),
}


def adapted(name: str, kernel: str = 'quadratic') -> nn.Module:
    """The backbone with adapters (non-zero U), in training mode."""
    builder, preset, _ = BACKBONES[name]
    model = builder()
    inject_quadratic_adapters(model, preset, rank=4, interaction=kernel)
    for _, layer in quadratic_layers(model):
        nn.init.normal_(layer.quad_u.weight, std=0.1)
    model.train()  # mmpretrain backbones' train() returns None
    return model


def freeze_primary_terms(model: nn.Module) -> None:
    """Phase 1 of stage training: every quadratic layer's ``L`` frozen (its backward
    then keeps the projections instead of recomputing them)."""
    for _, layer in quadratic_layers(model):
        for param in layer.primary_parameters():
            param.requires_grad_(False)
        assert layer._keeps_projection()


def inputs(name: str) -> torch.Tensor:
    return torch.randn(BACKBONES[name][2])


def graph_breaks(model: nn.Module, x: torch.Tensor):
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    return explanation.graph_break_count, explanation.break_reasons


@pytest.mark.parametrize(
    'mode',
    ['train_memory_efficient', 'train_plain_backward', 'train_frozen_primary', 'eval', 'exported'],
)
@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_no_graph_breaks(name, mode):
    model = adapted(name)
    assert len(list(quadratic_layers(model))) >= 2
    if mode == 'train_plain_backward':
        for _, layer in quadratic_layers(model):
            layer.memory_efficient = False
    if mode == 'train_frozen_primary':
        freeze_primary_terms(model)
    model.train(mode.startswith('train'))
    if mode == 'exported':
        model = export_for_inference(model)
    count, reasons = graph_breaks(model, inputs(name))
    assert count == 0, reasons


@pytest.mark.parametrize('frozen', [False, True], ids=['primary_trains', 'primary_frozen'])
def test_no_graph_breaks_under_autocast(frozen):
    """bf16 autocast: the shared cast of x and the backward's re-entered autocast trace,
    recomputing or keeping the projections."""
    model = adapted('convnext', kernel='rbf')
    if frozen:
        freeze_primary_terms(model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        count, reasons = graph_breaks(model, inputs('convnext'))
    assert count == 0, reasons


def _forward_backward(model: nn.Module, x: torch.Tensor, backend=None):
    """Outputs and parameter gradients of ``model`` (compiled with ``backend`` if given)."""
    run = model if backend is None else torch.compile(model, backend=backend, fullgraph=True)
    model.zero_grad(set_to_none=True)
    outs = run(x)
    sum(o.square().mean() for o in outs).backward()
    return [o.detach() for o in outs], {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize('frozen', [False, True], ids=['primary_trains', 'primary_frozen'])
@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_compiled_matches_eager(name, frozen):
    """One full graph (``fullgraph=True``) through AOTAutograd, which traces the analytic
    backward into the joint graph (with the kept projections as saved intermediates when
    ``L`` is frozen); outputs and every parameter gradient agree."""
    torch._dynamo.reset()
    model = adapted(name, kernel='poly')
    if frozen:
        freeze_primary_terms(model)
    x = inputs(name)
    outs, grads = _forward_backward(model, x)
    c_outs, c_grads = _forward_backward(copy.deepcopy(model), x, 'aot_eager')
    for out, c_out in zip(outs, c_outs):
        torch.testing.assert_close(c_out, out)
    assert set(c_grads) == set(grads)
    for key, grad in grads.items():
        torch.testing.assert_close(c_grads[key], grad, msg=key)


@pytest.mark.slow
def test_inductor_matches_eager():
    """The default backend (inductor compiles C++ kernels on CPU: a two-layer model keeps
    that under a minute), fp32, memory-efficient conv and linear adapters."""
    torch._dynamo.reset()
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 16),
    )
    inject_quadratic_adapters(model, [dict(type='1'), dict(type='3')], rank=4, interaction='rbf')
    for _, layer in quadratic_layers(model):
        nn.init.normal_(layer.quad_u.weight, std=0.1)
    x = torch.randn(2, 3, 8, 8)
    outs, grads = _forward_backward(model, x)
    c_outs, c_grads = _forward_backward(copy.deepcopy(model), x, 'inductor')
    for out, c_out in zip(outs, c_outs):
        torch.testing.assert_close(c_out, out, rtol=1e-4, atol=1e-5)
    for key, grad in grads.items():
        torch.testing.assert_close(c_grads[key], grad, rtol=1e-3, atol=1e-4, msg=key)
