# Cascade Mask R-CNN + FPN (4conv1fc, GIoU) with QNv2-ConvNeXt-T on COCO.
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',  # noqa
    './_base_/qnv2_convnext-t.py',
]
custom_imports = dict(imports=['mmpretrain.models', 'quadra_mm'], allow_failed_imports=False)

model = dict(backbone={{_base_.qnv2_backbone}})
