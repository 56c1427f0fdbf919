_base_ = './mask-rcnn_qnv2-convnext-t_fpn_amp-ms-crop-3x_coco.py'  # the flagship's earlier name
