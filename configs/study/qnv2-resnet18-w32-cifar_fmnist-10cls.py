# Adaptation study, same-task part: the pretrained first-order network of
# resnet18-w32-cifar_fmnist-10cls.py turned into a quadratic network through
# init_cfg (rank-8 atrous adapters on conv2 of every block, the `resnet`
# preset; backbone and head from the same checkpoint) and trained on the same
# task with stage training. tools/run_study.py derives the adapters-only, LoRA
# and from-scratch arms from this file.
_base_ = ['./resnet18-w32-cifar_fmnist-10cls.py', '../_base_/qnv2_adapter.py']

pretrained_checkpoint = 'work_dirs/study/same-task/pretrain/iter_500.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone={{_base_.model.backbone}},
        targets='resnet',
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_checkpoint, prefix='backbone.'),
    ),
    head=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained_checkpoint, prefix='head.')),
)
custom_hooks = [
    dict(
        type='QuadraticStageHook',
        switch_iter=25,  # half of the extra steps
        primary_lr_mult=0.1,
        # the study measures U's multiplier as its own arm (qnv2-u-lr): its
        # other QNv2 arms keep U at the common lr
        u_lr_mult=1.0,
    ),
]
