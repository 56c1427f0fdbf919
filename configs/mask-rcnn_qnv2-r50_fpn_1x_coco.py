# Mask R-CNN + FPN with a QNv2-ResNet-50 (quadratic adapters on the 3x3 convs
# of the bottlenecks of stages 2-4; stage 1 stays frozen as in mmdet),
# initialised from the torchvision ImageNet ResNet-50.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
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
        ),
        targets='resnet',
        stages=(1, 2, 3),
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(
            type='Pretrained',
            checkpoint='torchvision://resnet50',
            # torchvision's ImageNet classifier layer.
            allow_unexpected=[r'fc\..*'],
        ),
    )
)

custom_hooks = [
    dict(type='QuadraticStageHook', switch_epoch=4, primary_lr_mult=0.1, u_lr_mult=16.0),
    *_base_.qnv2_hooks,
]
find_unused_parameters = True
