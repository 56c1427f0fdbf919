# Mask R-CNN + FPN with a QNv2-ResNet-50 whose stages 2-4 use deformable 3x3
# convs (mmdet's `DCN`, as in mmdet's dconv-c3-c5 config): the quadratic
# branch sits beside each deformable conv2 (docs/design.md, "DCN adapters"),
# initialised from the torchvision ImageNet ResNet-50.
_base_ = [
    'mmdet::dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py',
    './_base_/qnv2_adapter.py',
    './_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['quadra_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(
            type='ResNet',
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=True,
            style='pytorch',
            dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
            stage_with_dcn=(False, True, True, True),
        ),
        targets='resnet',
        stages=(1, 2, 3),
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(
            type='Pretrained',
            checkpoint='torchvision://resnet50',
            # The ImageNet classifier has no offset convs (they start at
            # zero, as in mmdet: the deformable convs start as plain ones)
            # and an fc layer.
            allow_missing=[r'layer[2-4]\.\d+\.conv2\.conv_offset\..*'],
            allow_unexpected=[r'fc\..*'],
        ),
    )
)

custom_hooks = [
    dict(type='QuadraticStageHook', switch_epoch=4, primary_lr_mult=0.1, u_lr_mult=16.0),
    *_base_.qnv2_hooks,
]
# Frozen primary terms (the offset convs included) get no gradient in phase 1.
find_unused_parameters = True
