"""The shipped QNv2 detector configs (DINO-Swin-T, RTMDet-tiny, DCN Mask
R-CNN), built offline from their mmdet:: bases: one loss + backward that
reaches every adapter, then predict, on mmdet's demo inputs."""

import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config, ConfigDict
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

import quadra_mm  # noqa: F401
from quadra_mm.adapters import quadratic_layers
from quadra_mm.models import (
    QuadraNetV2,
    QuadraticDeformConv2dPack,
    QuadraticModulatedDeformConv2dPack,
)

from helpers import CONFIGS, without_pretrained


def build_detector(name: str, **backbone_options) -> torch.nn.Module:
    """The config's detector, without its checkpoint, the first-order
    backbone's config updated with ``backbone_options``."""
    cfg = ConfigDict(Config.fromfile(osp.join(CONFIGS, name)).model)
    without_pretrained(cfg)
    cfg.backbone.backbone.update(backbone_options)
    init_default_scope('mmdet')
    # SyncBN (RTMDet) needs a process group; mmengine's Runner reverts it
    # the same way when training without one.
    model = revert_sync_batchnorm(MODELS.build(cfg))
    model.init_weights()
    assert isinstance(model.backbone, QuadraNetV2)
    return model


def loss_backward_predict(model: torch.nn.Module, packed: dict) -> list:
    """One training loss and backward, every adapter's ``U`` getting a
    non-zero gradient; then the predictions."""
    layers = dict(quadratic_layers(model.backbone))
    assert layers
    model.train()
    data = model.data_preprocessor(packed, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [
        name
        for name, layer in layers.items()
        if layer.quad_u.weight.grad is None or not layer.quad_u.weight.grad.any()
    ]
    assert not no_grad
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == len(packed['inputs'])
    for result in results:
        assert result.pred_instances.bboxes.shape[1] == 4
    return results


@pytest.mark.slow
def test_dino_swin_t():
    # Stochastic depth would drop whole blocks, adapters included, of the
    # one-image batch.
    model = build_detector('dino-4scale_qnv2-swin-t_8xb2-12e_coco.py', drop_path_rate=0.0)
    assert len(dict(quadratic_layers(model.backbone))) == 2 * 12
    # DINO picks its top-900 queries among the encoder's tokens: the
    # image must give more tokens over its 4 levels.
    packed = demo_mm_inputs(1, [[3, 224, 224]], num_items=[3])
    with torch.no_grad():
        feats = model.extract_feat(model.data_preprocessor(packed, False)['inputs'])
    assert sum(f.shape[-2] * f.shape[-1] for f in feats) > model.num_queries
    loss_backward_predict(model, packed)


def test_rtmdet_tiny_cspnext():
    model = build_detector('rtmdet_qnv2-cspnext-tiny_8xb32-300e_coco.py')
    assert all(
        name.endswith('conv2.depthwise_conv.conv') for name, _ in quadratic_layers(model.backbone)
    )
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 96, 128]], num_items=[3, 2])
    loss_backward_predict(model, packed)


@pytest.mark.parametrize(
    'name,dcn',
    [
        pytest.param(
            'mask-rcnn_qnv2-r50-dconv-c3-c5_fpn_1x_coco.py',
            QuadraticDeformConv2dPack,
            marks=pytest.mark.slow,
        ),
        ('mask-rcnn_qnv2-r50-mdconv-c3-c5_fpn_1x_coco.py', QuadraticModulatedDeformConv2dPack),
    ],
)
def test_dcn_mask_rcnn(name, dcn):
    # Without the checkpoint, mmdet's zero_init_residual zeroes the last BN
    # of every block, which would cut the adapters off the loss.
    model = build_detector(name, zero_init_residual=False)
    layers = dict(quadratic_layers(model.backbone))
    # stages 2-4 adapted (stage 1 frozen), all of their conv2 deformable
    assert len(layers) == 13 and all(isinstance(layer, dcn) for layer in layers.values())
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 96, 128]], num_items=[2, 1], with_mask=True)
    results = loss_backward_predict(model, packed)
    assert hasattr(results[0].pred_instances, 'masks')


def _official_swin_layout(state_dict: dict) -> dict:
    """An mmdet SwinTransformer state dict renamed to the official Swin
    checkpoint layout (what mmdet's swin_converter reads), with the
    classifier's final norm and head, and a shifted-window mask buffer."""
    renames = (
        ('stages.', 'layers.'),
        ('attn.w_msa.', 'attn.'),
        ('ffn.layers.0.0.', 'mlp.fc1.'),
        ('ffn.layers.1.', 'mlp.fc2.'),
        ('patch_embed.projection', 'patch_embed.proj'),
    )
    official = {}
    for key, value in state_dict.items():
        if key.startswith('norm'):
            continue  # the detector's output norms
        for old, new in renames:
            key = key.replace(old, new, 1)
        official[key] = value
    dims = state_dict['norm3.weight'].shape[0]
    official.update(
        {
            'norm.weight': torch.ones(dims),
            'norm.bias': torch.zeros(dims),
            'head.weight': torch.zeros(10, dims),
            'layers.0.blocks.0.attn_mask': torch.zeros(4, 49, 49),
        }
    )
    return official


def test_official_swin_checkpoint_loads_strictly_through_the_scheme(tmp_path):
    """The DINO config's init_cfg: an official-layout Swin checkpoint,
    converted on load by mmdet's swin_converter (``mmdet-swin://``), fits
    mmdet's SwinTransformer under the strict QNv2 loader."""
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'dino-4scale_qnv2-swin-t_8xb2-12e_coco.py')
    ).model.backbone
    small = dict(
        type='SwinTransformer',
        embed_dims=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
        out_indices=(1, 2, 3),
    )
    init_default_scope('mmdet')
    torch.manual_seed(1)
    source = MODELS.build(dict(small, out_indices=(0, 1, 2, 3)))
    path = str(tmp_path / 'swin_official.pth')
    torch.save({'model': _official_swin_layout(source.state_dict())}, path)
    init_cfg = dict(cfg.init_cfg, checkpoint='mmdet-swin://' + path)
    model = MODELS.build(
        dict(type='QuadraNetV2', backbone=small, targets=cfg.targets, init_cfg=init_cfg)
    )
    model.init_weights()
    expected = source.state_dict()
    # Not from the checkpoint: the output norms; re-ordered by the converter:
    # the patch merging's.
    loaded = [
        k
        for k in model.state_dict()
        if k in expected and not k.startswith('norm') and 'downsample' not in k
    ]
    assert len(loaded) > 20 and all(torch.equal(model.state_dict()[k], expected[k]) for k in loaded)
