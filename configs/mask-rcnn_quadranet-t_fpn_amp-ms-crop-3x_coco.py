# The from-scratch baseline: Mask R-CNN + FPN with a QuadraNet-T backbone
# (ConvNeXt-T whose depthwise convs are quadratic neurons), no pretraining.
_base_ = [
    'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
    './_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['mmpretrain.models', 'quadra_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNet',
        arch='tiny',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        quadratic=dict(rank=8, kernel_size=3, dilation=2),
    )
)
# RNG state and data position in the checkpoints: --resume is exact; the
# checkpoints load with plain torch.load (publish_model, DetInferencer).
custom_hooks = _base_.qnv2_checkpoint_hooks
