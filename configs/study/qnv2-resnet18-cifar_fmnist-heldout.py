# Adaptation study, task (a) with QNv2: the same source checkpoint adapted to
# a quadratic network through init_cfg (QuadraNetV2 around the same
# ResNet_CIFAR; rank-8 atrous adapters on conv2 of every block), then stage
# training: adapters, norms and head first, everything (primary terms at
# lr x0.1) from half-way. tools/run_study.py derives the adapter-only, LoRA
# (interaction='linear') and from-scratch quadratic arms from this file.
_base_ = ['./resnet18-cifar_fmnist-heldout.py', '../_base_/qnv2_adapter.py']

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
