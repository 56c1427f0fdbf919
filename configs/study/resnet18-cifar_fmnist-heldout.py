# Adaptation study, target task (a): held-out classes. The source model of
# resnet18-cifar_fmnist-source.py fine-tuned (first-order, every parameter)
# on the 5 classes it never saw (Sandal, Shirt, Sneaker, Bag, Ankle boot),
# with few labels per class; a new head. tools/run_study.py derives the other
# first-order arms (linear probe, from scratch) from this file.
_base_ = './resnet18-cifar_fmnist-source.py'

source_checkpoint = 'work_dirs/study/source/iter_400.pth'
target_classes = [5, 6, 7, 8, 9]
labels_per_class = 200

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=source_checkpoint, prefix='backbone.')
    )
)
train_dataloader = dict(
    batch_size=50,
    dataset=dict(class_ids=target_classes, part='train', per_class=labels_per_class, seed=0),
)
val_dataloader = dict(dataset=dict(class_ids=target_classes))
test_dataloader = dict(dataset=dict(class_ids=target_classes))

max_iters = 200
val_interval = 50
train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=10, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
work_dir = 'work_dirs/study/heldout'
