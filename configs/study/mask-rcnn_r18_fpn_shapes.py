# Adaptation study, detection control: the demo detector
# (configs/demo/mask-rcnn_qnv2-r18_fpn_shapes.py) on the plain first-order
# ResNet-18, started from resnet18_1xb32_shapes-crops_extra-epochs.py. Same
# neck, heads, data, schedule; no adapters, no stage hook (every parameter
# trains from the first iteration, as a first-order detector would).
_base_ = '../demo/mask-rcnn_qnv2-r18_fpn_shapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/study/resnet18_1xb32_shapes-crops_extra-epochs/epoch_2.pth',  # noqa
            prefix='backbone.',
        ),
    )
)
custom_hooks = []
find_unused_parameters = False
work_dir = 'work_dirs/study/mask-rcnn_r18_fpn_shapes'
