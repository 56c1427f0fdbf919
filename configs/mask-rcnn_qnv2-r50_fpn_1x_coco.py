# Mask R-CNN + FPN with a QNv2-ResNet-50 (quadratic adapters on the 3x3 convs
# of the bottlenecks of stages 2-4; stage 1 stays frozen as in mmdet),
# initialised from the torchvision ImageNet ResNet-50.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
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
            style='pytorch'),
        targets='resnet',
        stages=(1, 2, 3),
        adapter=dict(rank=8, kernel_size=3, dilation=2, kernel='quadratic'),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='torchvision://resnet50',
            # torchvision's ImageNet classifier layer.
            allow_unexpected=[r'fc\..*'])))

custom_hooks = [
    dict(type='QuadraticStageHook', switch_epoch=4, primary_lr_mult=0.1),
    dict(type='QuadraticStatsHook', interval=50),
    dict(type='WeightsOnlyCheckpointHook'),  # plain torch.load reads them
    dict(type='ExactResumeHook'),  # RNG + data position in checkpoints
    # A NaN/inf loss stops training naming the first adapted layer that made it.
    dict(type='QuadraticNonFiniteHook'),
]
find_unused_parameters = True
