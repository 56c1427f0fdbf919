# Adaptation study, task (b) with QNv2: as qnv2-resnet18-cifar_fmnist-heldout.py
# on the shifted source classes (resnet18-cifar_fmnist-shift.py).
_base_ = ['./resnet18-cifar_fmnist-shift.py', '../_base_/qnv2_adapter.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(
            type='ResNet_CIFAR',
            depth=18,
            in_channels=1,
            stem_channels={{_base_.width}},
            base_channels={{_base_.width}},
        ),
        targets='resnet',
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(
            type='Pretrained', checkpoint={{_base_.source_checkpoint}}, prefix='backbone.'
        ),
    )
)
custom_hooks = [
    dict(
        type='QuadraticStageHook',
        switch_iter=100,  # half of max_iters
        primary_lr_mult=0.1,
        # the study measures U's multiplier as its own arm (qnv2-u-lr): its
        # other QNv2 arms keep U at the common lr
        u_lr_mult=1.0,
    ),
]
