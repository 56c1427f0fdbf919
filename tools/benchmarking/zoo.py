"""The benchmarked backbones (mmpretrain's, or timm/torchvision's without OpenMMLab),
their adapter targets and the default adapter."""

import torch

ADAPTER = dict(rank=8, kernel_size=3, dilation=2)
# fp16 is mmdet's --amp default on CUDA; the CPU autocast runs it too.
AUTOCAST_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def _mmpretrain_convnext():
    from mmpretrain.models import ConvNeXt

    return ConvNeXt(arch='tiny')


def _mmpretrain_resnet50():
    from mmpretrain.models import ResNet

    return ResNet(depth=50)


def _timm_convnext():
    import timm

    return timm.create_model('convnext_tiny')


def _torchvision_resnet50():
    from torchvision.models import resnet50

    return resnet50()


# zoo -> model -> (builder, adapter targets). The timm/torchvision zoo is for machines
# without OpenMMLab (the §6 calibration used timm's ConvNeXt-T).
ZOOS = {
    'mmpretrain': {
        'ConvNeXt-T': (_mmpretrain_convnext, 'convnext'),
        'ResNet-50': (_mmpretrain_resnet50, 'resnet'),
    },
    'timm': {
        'ConvNeXt-T': (
            _timm_convnext,
            [dict(type=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.conv_dw')],
        ),
        'ResNet-50': (_torchvision_resnet50, 'resnet'),
    },
}
