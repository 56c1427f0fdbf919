# Demo step 2: the first-order classifier of step 1 adapted to QNv2 with
# mmpretrain through init_cfg, exactly as a user adapts a model-zoo ImageNet
# checkpoint (compare configs/qnv2_convnext-t_in1k.py).
_base_ = [
    './resnet18_1xb32_shapes-crops.py',
    '../_base_/qnv2_adapter.py',
    '../_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['quadra_mm'], allow_failed_imports=False)

first_order_checkpoint = 'work_dirs/demo/resnet18_1xb32_shapes-crops/epoch_6.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(type='ResNet', depth=18),
        targets='resnet',
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(type='Pretrained', checkpoint=first_order_checkpoint, prefix='backbone.'),
    ),
    head=dict(init_cfg=dict(type='Pretrained', checkpoint=first_order_checkpoint, prefix='head.')),
)

max_epochs = 2
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0),
]
custom_hooks = [
    dict(type='QuadraticStageHook', switch_epoch=1, primary_lr_mult=0.1, u_lr_mult=16.0),
    dict(type='QuadraticStatsHook', interval=50),
    *_base_.qnv2_checkpoint_hooks,
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
work_dir = 'work_dirs/demo/qnv2-resnet18_1xb32_shapes-crops'
