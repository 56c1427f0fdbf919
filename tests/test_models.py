"""QuadraNetV2 / QuadraNet backbones inside real mmdet and mmpretrain models."""

import copy
import pickle

import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS as CLS_MODELS

import quadra_mm  # noqa: F401
from quadra_mm.adapters import quadratic_layers
from quadra_mm.models import QuadraNet, QuadraNetV2, build_quadranet_v2
from quadra_mm.ops import is_adapter_param_name

from helpers import TINY_CONVNEXT, convnext_cfg, demo_detector_cfg, qnv2_cfg, save_zoo_checkpoint

RESNET18 = dict(
    type='mmdet.ResNet', depth=18, out_indices=(0, 1, 2, 3), norm_eval=True, frozen_stages=1
)


def _mask_rcnn_cfg(backbone: dict, in_channels):
    cfg = demo_detector_cfg().model
    cfg.backbone = backbone
    cfg.neck.in_channels = list(in_channels)
    return cfg


@pytest.mark.parametrize(
    'first_order,targets,channels',
    [
        (convnext_cfg(), 'convnext', TINY_CONVNEXT['channels']),
        (RESNET18, 'resnet', [64, 128, 256, 512]),
    ],
)
def test_zero_quadratic_term_reproduces_first_order_mask_rcnn(first_order, targets, channels):
    init_default_scope('mmdet')
    reference = DET_MODELS.build(_mask_rcnn_cfg(first_order, channels))
    reference.init_weights()
    adapted = DET_MODELS.build(_mask_rcnn_cfg(qnv2_cfg(first_order, targets), channels))
    adapted.init_weights()
    result = adapted.load_state_dict(reference.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(is_adapter_param_name(k) for k in result.missing_keys)
    assert isinstance(adapted.backbone, QuadraNetV2)
    assert sum(1 for _ in quadratic_layers(adapted)) > 0

    packed = demo_mm_inputs(
        2, [[3, 96, 96], [3, 96, 80]], num_items=[3, 2], num_classes=6, with_mask=True
    )
    reference.eval(), adapted.eval()
    with torch.no_grad():
        data = reference.data_preprocessor(packed, False)
        ref_feats = reference.backbone(data['inputs'])
        feats = adapted.backbone(data['inputs'])
        assert all(torch.equal(a, b) for a, b in zip(ref_feats, feats))
        ref_out = reference(**data, mode='predict')
        out = adapted(**data, mode='predict')
    for r, o in zip(ref_out, out):
        for key in ('bboxes', 'scores', 'labels', 'masks'):
            assert torch.equal(getattr(r.pred_instances, key), getattr(o.pred_instances, key)), key


def test_parameter_names_are_the_backbones_own_plus_adapters():
    init_default_scope('mmdet')
    first_order = DET_MODELS.build(convnext_cfg())
    adapted = DET_MODELS.build(qnv2_cfg(convnext_cfg()))
    names = dict(adapted.named_parameters())
    assert set(dict(first_order.named_parameters())) == {
        n for n in names if not is_adapter_param_name(n)
    }
    assert 'stages.0.0.depthwise_conv.weight' in names
    assert 'stages.0.0.depthwise_conv.quad_u.weight' in names
    # The adapted class is the backbone's own class, derived.
    assert isinstance(adapted, type(first_order))
    clone = copy.deepcopy(adapted)
    restored = pickle.loads(pickle.dumps(adapted))
    x = torch.randn(1, 3, 64, 64)
    adapted.eval(), clone.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(adapted(x)[-1], clone(x)[-1])
        assert torch.equal(adapted(x)[-1], restored(x)[-1])


def test_qnv2_is_a_builder_registered_in_both_scopes(tmp_path):
    """type='QuadraNetV2' names one builder function in mmdet's and
    mmpretrain's registries; a Pretrained entry of the wrapped backbone's
    init_cfg moves to the adapted model (the backbone's other entries stay
    its own), and bad input is an error naming it."""
    assert DET_MODELS.get('QuadraNetV2') is build_quadranet_v2
    assert CLS_MODELS.get('QuadraNetV2') is build_quadranet_v2
    init_default_scope('mmdet')
    pretrained = dict(type='Pretrained', checkpoint='zoo.pth', prefix='backbone.')
    constant = dict(type='Constant', layer='LayerNorm', val=2.0)
    adapted = DET_MODELS.build(qnv2_cfg(convnext_cfg(init_cfg=[pretrained, constant])))
    assert type(adapted).__name__ == 'QuadraNetV2<mmpretrain.models.backbones.convnext.ConvNeXt>'
    assert isinstance(adapted, QuadraNetV2)
    assert adapted.qnv2_pretrained == pretrained
    assert adapted.init_cfg == [constant]
    adapted.qnv2_pretrained = None  # zoo.pth is not here
    adapted.init_weights()  # the backbone's own init ran: LayerNorms at 2
    assert torch.equal(adapted.norm3.weight, torch.full_like(adapted.norm3.weight, 2.0))

    with pytest.raises(ValueError, match='`backbone` must be a config dict'):
        DET_MODELS.build(dict(type='QuadraNetV2', backbone='ResNet', targets='resnet'))
    with pytest.raises(ValueError, match='already a QuadraNetV2'):
        DET_MODELS.build(
            dict(type='QuadraNetV2', backbone=qnv2_cfg(convnext_cfg()), targets='convnext')
        )
    with pytest.raises(ValueError, match='2 Pretrained entries'):
        DET_MODELS.build(qnv2_cfg(convnext_cfg(), init_cfg=[pretrained] * 2))


def _classifier(backbone):
    return CLS_MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead', num_classes=6, in_channels=TINY_CONVNEXT['channels'][-1]
            ),
        )
    )


def test_model_zoo_checkpoint_initialises_qnv2(tmp_path):
    init_default_scope('mmpretrain')
    classifier = _classifier(convnext_cfg(out_indices=(3,)))
    classifier.init_weights()
    ckpt = save_zoo_checkpoint(classifier, str(tmp_path / 'zoo.pth'))

    init_default_scope('mmdet')
    backbone = DET_MODELS.build(
        qnv2_cfg(
            convnext_cfg(),
            init_cfg=dict(
                type='Pretrained',
                checkpoint=ckpt,
                prefix='backbone.',
                allow_missing=[r'norm[0-2]\..*'],
            ),
        )
    )
    backbone.init_weights()
    loaded = classifier.backbone.state_dict()
    own = backbone.state_dict()
    for key, value in loaded.items():
        assert torch.equal(own[key], value), key
    for _, layer in quadratic_layers(backbone):
        assert not layer.quad_u.weight.any()

    # A QNv2 checkpoint (adapter keys included) loads the same way.
    for _, layer in quadratic_layers(backbone):
        torch.nn.init.normal_(layer.quad_u.weight)
    detector_like = torch.nn.Module()
    detector_like.backbone = backbone
    qnv2_ckpt = save_zoo_checkpoint(detector_like, str(tmp_path / 'q.pth'))
    again = DET_MODELS.build(
        qnv2_cfg(
            convnext_cfg(),
            init_cfg=dict(type='Pretrained', checkpoint=qnv2_ckpt, prefix='backbone.'),
        )
    )
    again.init_weights()
    for key, value in backbone.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_wrong_checkpoint_is_a_clear_error(tmp_path):
    init_default_scope('mmdet')
    resnet = DET_MODELS.build(dict(RESNET18, type='ResNet'))
    wrapper = torch.nn.Module()
    wrapper.backbone = resnet
    ckpt = save_zoo_checkpoint(wrapper, str(tmp_path / 'resnet.pth'))

    backbone = DET_MODELS.build(
        qnv2_cfg(
            convnext_cfg(), init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.')
        )
    )
    with pytest.raises(ValueError) as error:
        backbone.init_weights()
    message = str(error.value)
    assert ckpt in message
    assert 'missing keys: downsample_layers.0.0.weight' in message
    assert 'unexpected keys: conv1.weight' in message

    backbone = DET_MODELS.build(
        qnv2_cfg(convnext_cfg(), init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='head.'))
    )
    with pytest.raises(ValueError, match="no keys under prefix 'head.'"):
        backbone.init_weights()

    missing = str(tmp_path / 'no_such.pth')
    backbone = DET_MODELS.build(
        qnv2_cfg(
            convnext_cfg(), init_cfg=dict(type='Pretrained', checkpoint=missing, prefix='backbone.')
        )
    )
    with pytest.raises(
        FileNotFoundError,
        match=r'QuadraNetV2\[ConvNeXt\]: init_cfg.checkpoint '
        f"'{missing}' is not a file",
    ):
        backbone.init_weights()


def test_qnv2_inside_mmpretrain_classifier_and_layer_decay():
    init_default_scope('mmpretrain')
    model = _classifier(qnv2_cfg(convnext_cfg(out_indices=(3,))))
    model.init_weights()
    out = model(torch.randn(2, 3, 64, 64), mode='tensor')
    assert out.shape == (2, 6)

    # mmdet's layer-wise lr decay reads parameter names: adapters get the
    # layer id of their block.
    from mmdet.engine.optimizers import LearningRateDecayOptimizerConstructor

    init_default_scope('mmdet')
    detector = DET_MODELS.build(_mask_rcnn_cfg(qnv2_cfg(convnext_cfg()), TINY_CONVNEXT['channels']))
    constructor = LearningRateDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)),
        dict(decay_rate=0.5, decay_type='layer_wise', num_layers=6),
    )
    wrapper = constructor(detector)
    lr_of = {id(p): g['lr'] for g in wrapper.optimizer.param_groups for p in g['params']}
    block = detector.backbone.stages[3][0].depthwise_conv
    assert lr_of[id(block.quad_u.weight)] == lr_of[id(block.weight)]
    first = detector.backbone.stages[0][0].depthwise_conv
    assert lr_of[id(first.quad_u.weight)] < lr_of[id(block.quad_u.weight)]


@pytest.mark.parametrize('arch', ['atto', 'tiny', 'small', 'base'])
def test_quadranet_archs(arch):
    init_default_scope('mmdet')
    model = DET_MODELS.build(
        dict(type='QuadraNet', arch=arch, out_indices=(3,), quadratic=dict(rank=4))
    )
    assert isinstance(model, QuadraNet)
    layers = list(quadratic_layers(model))
    assert len(layers) == sum(model.arch_settings[arch]['depths'])
    if arch == 'atto':
        model.init_weights()
        assert all(not layer.quad_u.weight.any() for _, layer in layers)
        out = model(torch.randn(1, 3, 64, 64))
        assert out[-1].shape[1] == 320
