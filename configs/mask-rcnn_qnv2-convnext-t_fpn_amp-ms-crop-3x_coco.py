# Mask R-CNN + FPN with QNv2-ConvNeXt-T on COCO (bbox + segm CocoMetric):
# mmdet's ConvNeXt-T Mask R-CNN (AMP, multi-scale crop, 3x) with the
# backbone adapted by QuadraNet V2 and stage training.
_base_ = [
    'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
    './_base_/qnv2_convnext-t.py',
]
custom_imports = dict(imports=['mmpretrain.models', 'quadra_mm'], allow_failed_imports=False)

model = dict(backbone={{_base_.qnv2_backbone}})
