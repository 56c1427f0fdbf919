# Demo step 3/4: Mask R-CNN + FPN with the QNv2-ResNet-18 adapted in
# step 2, trained with tools/train.py and scored by mmdet's CocoMetric (bbox +
# segm) with tools/test.py. A miniature of
# configs/mask-rcnn_qnv2-convnext-t_fpn_amp-ms-crop-3x_coco.py:
# the same model-zoo base, a smaller model and the generated shapes data.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/qnv2_adapter.py',
    '../_base_/qnv2_hooks.py',
]
custom_imports = dict(imports=['quadra_mm'], allow_failed_imports=False)

classes = ('circle', 'cross', 'ellipse', 'square', 'star', 'triangle')
data_root = 'data/shapes/'
img_size = 192
adapted_checkpoint = 'work_dirs/demo/qnv2-resnet18_1xb32_shapes-crops/epoch_2.pth'  # noqa
channels = 64

model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0]),
    backbone=dict(
        _delete_=True,
        type='QuadraNetV2',
        backbone=dict(
            type='ResNet', depth=18, out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=True
        ),
        targets='resnet',
        adapter={{_base_.qnv2_adapter}},
        init_cfg=dict(type='Pretrained', checkpoint=adapted_checkpoint, prefix='backbone.'),
    ),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        # A fixed 2x2 sampling grid per RoI bin instead of the adaptive one:
        # mmcv's CPU RoIAlign backward was a third of the iteration time.
        bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2), out_channels=channels),
        bbox_head=dict(in_channels=channels, fc_out_channels=256, num_classes=len(classes)),
        mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2), out_channels=channels),
        mask_head=dict(
            num_convs=2, in_channels=channels, conv_out_channels=channels, num_classes=len(classes)
        ),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300), rcnn=dict(sampler=dict(num=128))
    ),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)),
)

metainfo = dict(classes=classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_iters = 800
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters
)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
custom_hooks = [
    dict(type='QuadraticStageHook', switch_iter=50, primary_lr_mult=0.5, u_lr_mult=16.0),
    dict(type='QuadraticStatsHook', interval=100),
    *_base_.qnv2_checkpoint_hooks,
    # Beside each full checkpoint: only what trained, over its base.
    dict(type='AdapterCheckpointHook'),
]
find_unused_parameters = True
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters),
)
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# deterministic: torch.use_deterministic_algorithms, so an op without a
# deterministic CPU kernel fails loudly instead of changing the mAP per run.
randomness = dict(seed=0, deterministic=True)
work_dir = 'work_dirs/demo/mask-rcnn_qnv2-r18_fpn_shapes'
