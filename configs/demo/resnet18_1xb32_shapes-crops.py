# Demo step 1: a first-order ResNet-18 classifier trained with mmpretrain
# on object crops of the generated shapes data. It stands in for a model-zoo
# ImageNet checkpoint (nothing is downloaded on an offline machine).
_base_ = 'mmpretrain::_base_/default_runtime.py'

data_root = 'data/shapes/crops/'
num_classes = 6
crop_size = 64

model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ),
)

data_preprocessor = dict(
    num_classes=num_classes, mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0], to_rgb=True
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # No random crops: the class is the outline, a crop that cuts corners
    # off turns a star into a cross.
    dict(type='Resize', scale=(crop_size, crop_size)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(crop_size, crop_size)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(
        type='CustomDataset', data_root=data_root, data_prefix='train', pipeline=train_pipeline
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(
        type='CustomDataset', data_root=data_root, data_prefix='val', pipeline=test_pipeline
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1,))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 6
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=True, begin=1),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs),
)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# deterministic: torch.use_deterministic_algorithms, so an op without a
# deterministic CPU kernel fails loudly instead of changing the mAP per run.
randomness = dict(seed=0, deterministic=True)
work_dir = 'work_dirs/demo/resnet18_1xb32_shapes-crops'
