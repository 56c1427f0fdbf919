# QNv2-ConvNeXt-T: the mmpretrain ConvNeXt-T of mmdet's ConvNeXt detectors,
# adapted by QuadraNet V2 and initialised from the mmpretrain ImageNet-1k
# checkpoint. Detector configs use it as `model = dict(backbone=...)`.
_base_ = ['./qnv2_adapter.py', './qnv2_hooks.py']

qnv2_checkpoint = 'https://download.openmmlab.com/mmclassification/v0/convnext/convnext-tiny_32xb128-noema_in1k_20221208-5d4509c7.pth'  # noqa
qnv2_backbone = dict(
    _delete_=True,
    type='QuadraNetV2',
    backbone=dict(
        type='mmpretrain.ConvNeXt',
        arch='tiny',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
    ),
    targets='convnext',
    adapter={{_base_.qnv2_adapter}},
    init_cfg=dict(
        type='Pretrained',
        checkpoint=qnv2_checkpoint,
        prefix='backbone.',
        # The classifier has only the last stage's output norm.
        allow_missing=[r'norm[0-2]\..*'],
    ),
)

# Stage training: phase 1 trains adapters, norms, neck and heads on the frozen
# pretrained backbone; phase 2 fine-tunes everything, the primary terms at
# 0.1x lr. The adapters' U train at 16x their group's lr in both phases.
custom_hooks = [
    dict(type='QuadraticStageHook', switch_epoch=12, primary_lr_mult=0.1, u_lr_mult=16.0),
    *_base_.qnv2_hooks,
]
# Frozen primary terms get no gradient in phase 1 of stage training.
find_unused_parameters = True
