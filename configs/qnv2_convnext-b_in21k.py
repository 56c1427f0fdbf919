# ImageNet-21k adaptation: the ConvNeXt-B ImageNet-21k classifier (mmpretrain
# model zoo) becomes QNv2-ConvNeXt-B and is trained for 20 epochs with stage
# training.
_base_ = [
    'mmpretrain::convnext/convnext-base_32xb128_in21k.py',
    './_base_/qnv2_adapter.py',
    './_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['quadra_mm'], allow_failed_imports=False)

checkpoint = 'https://download.openmmlab.com/mmclassification/v0/convnext/convnext-base_3rdparty_in21k_20220124-13b83eec.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(type='ConvNeXt', arch='base', drop_path_rate=0.5),
        targets='convnext',
        adapter=dict(_base_.qnv2_adapter, rank=16),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.'),
    ),
    head=dict(
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=checkpoint, prefix='head.')
    ),
)

max_epochs = 20
train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1),
]
custom_hooks = [
    dict(type='QuadraticStageHook', switch_epoch=5, primary_lr_mult=0.1, u_lr_mult=16.0),
    dict(type='QuadraticStatsHook', interval=100),
    *_base_.qnv2_checkpoint_hooks,
]
find_unused_parameters = True
