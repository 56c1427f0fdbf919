# Adaptation study, target task (b): the source classes seen through a
# non-linear input shift, "solarise + swirl"
# (quadra_mm/datasets/fashion_mnist_shift.py): a non-monotonic intensity map
# and a local rotation of the image centre. Same label space as the source,
# so the whole source classifier (head included) is the starting point. The
# train and val images are disjoint from the source model's.
_base_ = './resnet18-cifar_fmnist-heldout.py'

target_classes = [0, 1, 2, 3, 4]
shift = 'solarise_swirl'

model = dict(
    head=dict(
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.source_checkpoint}}, prefix='head.')
    )
)
train_dataloader = dict(dataset=dict(class_ids=target_classes, shift=shift))
val_dataloader = dict(dataset=dict(class_ids=target_classes, shift=shift))
test_dataloader = dict(dataset=dict(class_ids=target_classes, shift=shift))
work_dir = 'work_dirs/study/shift'
