# RTMDet-tiny with a QNv2-CSPNeXt backbone: quadratic adapters beside the
# depthwise 5x5 conv of every CSPNeXtBlock (`cspnext` preset), initialised
# from mmdet's ImageNet CSPNeXt-tiny checkpoint.
_base_ = [
    'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    './_base_/qnv2_adapter.py',
    './_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['quadra_mm'], allow_failed_imports=False)

checkpoint = 'https://download.openmmlab.com/mmdetection/v3.0/rtmdet/cspnext_rsb_pretrain/cspnext-tiny_imagenet_600e.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(
            type='CSPNeXt',
            arch='P5',
            expand_ratio=0.5,
            deepen_factor=0.167,
            widen_factor=0.375,
            channel_attention=True,
            norm_cfg=dict(type='SyncBN'),
            act_cfg=dict(type='SiLU', inplace=True),
        ),
        targets='cspnext',
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=checkpoint),
    )
)

# The list replaces the base's: its EMA and pipeline-switch hooks come first.
custom_hooks = [
    dict(
        type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49
    ),
    dict(
        type='PipelineSwitchHook',
        switch_epoch=280,
        switch_pipeline={{_base_.train_pipeline_stage2}},
    ),
    dict(type='QuadraticStageHook', switch_epoch=100, primary_lr_mult=0.1, u_lr_mult=16.0),
    *_base_.qnv2_hooks,
]
# Frozen primary terms get no gradient in phase 1 of stage training.
find_unused_parameters = True
