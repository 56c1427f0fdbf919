# Adaptation study (tools/run_study.py), step 1: the first-order source model.
# A CIFAR-style ResNet-18 (3x3 stem, no max-pool, widths 8-64) trained with
# mmpretrain on 5 Fashion-MNIST classes (T-shirt/top, Trouser, Pullover,
# Dress, Coat) at their native 28 x 28. It stands in for a model-zoo
# checkpoint; the target configs adapt it.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(
    imports=['quadra_mm', 'quadra_mm.datasets.fashion_mnist'], allow_failed_imports=False
)

data_prefix = 'data/fashion_mnist'
source_classes = [0, 1, 2, 3, 4]
num_classes = 5
width = 8

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR', depth=18, in_channels=1, stem_channels=width, base_channels=width
    ),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=8 * width,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ),
)
data_preprocessor = dict(num_classes=num_classes, mean=[72.9], std=[90.0], to_rgb=False)

pipeline = [dict(type='PackInputs')]
# Samples stay in their list (num_workers=0: no worker to share them with).
dataset = dict(
    type='FashionMNISTSubset',
    data_prefix=data_prefix,
    class_ids=source_classes,
    pipeline=pipeline,
    serialize_data=False,
)
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(dataset, part='source', per_class=1000),
    # Iteration-based training without epoch ends (mmengine pauses 2 s at
    # each one).
    sampler=dict(type='InfiniteSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=250,
    num_workers=0,
    dataset=dict(dataset, part='val'),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = dict(
    batch_size=250,
    num_workers=0,
    dataset=dict(dataset, part='test'),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

max_iters = 400
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=max_iters,
        save_optimizer=False,
        save_param_scheduler=False,
    ),
)
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
work_dir = 'work_dirs/study/source'
