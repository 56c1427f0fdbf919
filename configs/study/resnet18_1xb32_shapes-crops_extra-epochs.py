# Adaptation study, detection control: the first-order twin of the demo's
# QNv2 adaptation step (configs/demo/qnv2-resnet18_1xb32_shapes-crops.py).
# Same data, epochs, optimizer and schedule; the first-order classifier just
# keeps training (every parameter, no adapters, no stages), so the detector
# it starts gets the same extra classifier epochs as the QNv2 one.
_base_ = '../demo/qnv2-resnet18_1xb32_shapes-crops.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        init_cfg=dict(
            type='Pretrained', checkpoint={{_base_.first_order_checkpoint}}, prefix='backbone.'
        ),
    )
)
custom_hooks = []
work_dir = 'work_dirs/study/resnet18_1xb32_shapes-crops_extra-epochs'
