# DINO-4scale with a QNv2-Swin-T backbone (mmdet's SwinTransformer; quadratic
# adapters on both linears of every block MLP, `swin` preset), 12 epochs on
# COCO, initialised from the official ImageNet-1k Swin-T checkpoint.
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    './_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['quadra_mm'], allow_failed_imports=False)

pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(
            type='SwinTransformer',
            embed_dims=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
            mlp_ratio=4,
            qkv_bias=True,
            qk_scale=None,
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.2,
            patch_norm=True,
            out_indices=(1, 2, 3),
            with_cp=False,
        ),
        targets='swin',
        adapter=dict(rank=8, interaction='quadratic'),
        init_cfg=dict(
            type='Pretrained',
            # mmdet's swin_converter applied on load (quadra_mm.models.
            # swin_checkpoint): the strict loader sees mmdet's key layout.
            checkpoint='mmdet-swin://' + pretrained,
            prefix='backbone.',
            # The classifier's final norm, and the shifted-window masks that
            # mmdet's Swin recomputes, are not the detector's output norms.
            allow_missing=[r'norm[1-3]\..*'],
            allow_unexpected=[r'norm\..*', r'.*\.attn_mask'],
        ),
    ),
    neck=dict(in_channels=[192, 384, 768]),
)

custom_hooks = [
    dict(type='QuadraticStageHook', switch_epoch=4, primary_lr_mult=0.1, u_lr_mult=16.0),
    *_base_.qnv2_hooks,
]
# Frozen primary terms get no gradient in phase 1 of stage training.
find_unused_parameters = True
