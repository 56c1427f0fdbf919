"""Float16 autocast (mmdet's --amp on CUDA; the CPU autocast reproduces it): the
quadratic branch stays finite wherever the first-order layer does, at the activation
sizes pretrained networks have, and a non-finite loss names the layer that made it."""

import pytest
import torch
from mmengine.runner import Runner
from torch import nn

from quadra_mm.adapters import quadratic_layers
from quadra_mm.ops import QuadraticConv2d, QuadraticLinear

from helpers import demo_detector_cfg, tiny_training

LAYERS = {
    # ConvNeXt-T stage 1: depthwise 7x7, 96 channels; ResNet conv2 (3x3), plain and strided.
    'convnext_depthwise': lambda: nn.Conv2d(96, 96, 7, padding=3, groups=96),
    'resnet_conv2': lambda: nn.Conv2d(64, 64, 3, padding=1, bias=False),
    'resnet_conv2_strided': lambda: nn.Conv2d(128, 128, 3, stride=2, padding=1, bias=False),
}
STDS = [10, 100, 300, 1000, 1e4, 'outlier']
DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'fp32': None}


def _input(channels: int, std) -> torch.Tensor:
    x = torch.randn(2, channels, 14, 14, generator=torch.Generator().manual_seed(0))
    if std == 'outlier':  # one channel of 1e4 among unit-variance ones
        x[:, 3] *= 1e4
        return x
    return x * std


def _run(layer: nn.Module, x: torch.Tensor, dtype):
    x = x.clone().requires_grad_(True)
    with torch.autocast('cpu', dtype=dtype or torch.float32, enabled=dtype is not None):
        out = layer(x)
    out.float().sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('std', STDS, ids=str)
@pytest.mark.parametrize('kind', LAYERS)
def test_quadratic_term_finite_wherever_the_layer_is(kind, std, dtype):
    torch.manual_seed(0)
    conv = LAYERS[kind]()
    layer = QuadraticConv2d.from_conv(conv)  # dense rank 8, k=3, d=2 (the default)
    x = _input(conv.in_channels, std)
    expected, expected_grad = _run(conv, x, DTYPES[dtype])
    assert torch.isfinite(expected).all() and torch.isfinite(expected_grad).all()

    out, grad = _run(layer, x, DTYPES[dtype])  # U = 0: exactly L(x), in every precision
    assert torch.equal(out, expected)
    assert torch.isfinite(grad).all()

    nn.init.normal_(layer.quad_u.weight, std=1e-2)  # a trained-looking U
    out, grad = _run(layer, x, DTYPES[dtype])
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    # (Weight gradients of an unscaled sum of 1e4-sized outputs may exceed fp16 here as
    # L's own do; GradScaler owns that.)


def test_plain_quadratic_term_below_the_range_limit_and_bounded_above():
    """Below the limit the branch is the plain quadratic bit for bit; above, it grows
    like L (degree 1), and the same in fp32 as in fp16 up to rounding."""
    torch.manual_seed(0)
    layer = QuadraticConv2d.from_conv(nn.Conv2d(16, 16, 3, padding=1), rank=4)
    nn.init.normal_(layer.quad_u.weight, std=0.1)
    x = torch.randn(2, 16, 8, 8)
    a, b = layer.quad_a(x), layer.quad_b(x)
    assert max(a.abs().max(), b.abs().max()) < layer.interaction.range_limit
    with torch.no_grad():
        assert torch.equal(layer.quadratic_term(x), layer.quad_u(a * b) * layer.scale)
        big = [layer.quadratic_term(x * scale).abs().max().item() for scale in (1e3, 1e4)]
        assert 5 < big[1] / big[0] < 20  # ~10x for 10x the input, not 100x
        with torch.autocast('cpu', dtype=torch.float16):
            half = layer.quadratic_term(x * 1e3)
        torch.testing.assert_close(
            half.float(), layer.quadratic_term(x * 1e3), rtol=2e-2, atol=0.05 * big[0]
        )


def test_linear_quadratic_term_finite_under_fp16():
    torch.manual_seed(0)
    layer = QuadraticLinear.from_linear(nn.Linear(384, 384))
    nn.init.normal_(layer.quad_u.weight, std=1e-2)
    x = torch.randn(2, 49, 384) * 1e3
    out, grad = _run(layer, x, torch.float16)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()


def test_demo_detector_trains_under_fp16_autocast():
    """The demo Mask R-CNN, from its config, some iterations under CPU float16 autocast
    (mmengine's AmpOptimWrapper takes only bf16 on the CPU, so the step is driven here),
    with trained-looking adapters and inputs scaled so the backbone sees activations in
    the hundreds."""
    from mmdet.testing import demo_mm_inputs
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope('mmdet')
    cfg = demo_detector_cfg()
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # trained-looking adapters, so the branch is on
        for _, layer in quadratic_layers(model):
            nn.init.normal_(layer.quad_u.weight, std=1e-2)
    model.train()
    optim = build_optim_wrapper(
        model, dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=1e-3, momentum=0.9))
    )
    packed = demo_mm_inputs(
        2,
        [[3, 96, 96]] * 2,
        num_items=[3, 3],
        with_mask=True,
        num_classes=len(cfg.metainfo['classes']) if 'metainfo' in cfg else 6,
    )
    # mmcv's CPU NMS and RoIAlign have no half kernels (its CUDA ones do): the backbone
    # and neck, where the adapters are, run under fp16 autocast, the heads in fp32.
    extract_feat = model.extract_feat

    def extract_feat_fp16(inputs):
        with torch.autocast('cpu', dtype=torch.float16):
            feats = extract_feat(inputs)
        assert feats[0].dtype == torch.float16
        return tuple(f.float() for f in feats)

    model.extract_feat = extract_feat_fp16
    losses = []
    for _ in range(3):
        data = model.data_preprocessor(packed, True)
        data['inputs'] = data['inputs'] * 100  # ResNet stem outputs in the hundreds
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        optim.update_params(loss)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = QuadraticConv2d.from_conv(nn.Conv2d(3, 4, 3, padding=1), rank=2)
        self.second = QuadraticConv2d.from_conv(nn.Conv2d(4, 1, 3, padding=1), rank=2)

    def forward(self, x):
        return self.second(self.first(x))


def test_nonfinite_loss_names_the_layer(tmp_path):
    from mmengine.model import BaseModel

    class Model(BaseModel):
        def __init__(self):
            super().__init__()
            self.body = TwoLayers()
            with torch.no_grad():  # the second adapter overflows fp32
                self.body.second.quad_u.weight.fill_(1e38)

        def forward(self, inputs, targets=None, mode='tensor'):
            out = self.body(inputs * 1e3).mean((1, 2, 3))
            return dict(loss=((out - targets.flatten()) ** 2).mean()) if mode == 'loss' else out

    runner = Runner(
        model=Model(),
        work_dir=str(tmp_path),
        **tiny_training(4),
        train_cfg=dict(by_epoch=False, max_iters=2),
        custom_hooks=[dict(type='QuadraticNonFiniteHook')],
        default_scope='mmdet',
    )
    with pytest.raises(FloatingPointError, match=r"non-finite training loss .* 'body\.second'"):
        runner.train()
    # Logged instead of raised: training goes on, the step already had the bad loss.
    runner = Runner(
        model=Model(),
        work_dir=str(tmp_path / 'logged'),
        **tiny_training(4),
        train_cfg=dict(by_epoch=False, max_iters=1),
        custom_hooks=[dict(type='QuadraticNonFiniteHook', raise_error=False)],
        default_scope='mmdet',
    )
    runner.train()
    # (mmengine's logger keeps the file of the first Runner made in the same second.)
    log = ''.join(path.read_text() for path in tmp_path.rglob('*.log'))
    assert "first quadratic layer with a non-finite output: 'body.second'" in log
