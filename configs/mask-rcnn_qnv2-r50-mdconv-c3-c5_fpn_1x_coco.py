# As mask-rcnn_qnv2-r50-dconv-c3-c5_fpn_1x_coco.py with modulated deformable
# convs (mmdet's `DCNv2`, its dcnv2/mask-rcnn_r50-mdconv-c3-c5 config).
_base_ = './mask-rcnn_qnv2-r50-dconv-c3-c5_fpn_1x_coco.py'

model = dict(
    backbone=dict(backbone=dict(dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False)))
)
