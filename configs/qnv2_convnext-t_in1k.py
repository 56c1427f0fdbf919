# ImageNet-1k adaptation: the mmpretrain ConvNeXt-T classifier becomes
# QNv2-ConvNeXt-T (adapters on every depthwise conv) and is trained for 30
# epochs with stage training, instead of pre-training a quadratic network
# for 300 epochs from scratch.
_base_ = [
    'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
    './_base_/qnv2_adapter.py',
    './_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['quadra_mm'], allow_failed_imports=False)

checkpoint = 'https://download.openmmlab.com/mmclassification/v0/convnext/convnext-tiny_32xb128_in1k_20221207-998cf3e9.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(type='ConvNeXt', arch='tiny', drop_path_rate=0.1),
        targets='convnext',
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.'),
    ),
    head=dict(
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=checkpoint, prefix='head.')
    ),
)

max_epochs = 30
train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1),
]
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    dict(type='QuadraticStageHook', switch_epoch=10, primary_lr_mult=0.1, u_lr_mult=16.0),
    dict(type='QuadraticStatsHook', interval=100),
    *_base_.qnv2_checkpoint_hooks,
]
find_unused_parameters = True
