"""Small real models and checkpoints shared by the integration tests."""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')
DEMO_DETECTOR = osp.join(CONFIGS, 'demo',
                         'mask-rcnn_qnv2-r18_fpn_shapes.py')

# A two-block-per-stage ConvNeXt small enough for per-test training runs.
TINY_CONVNEXT = dict(depths=[1, 1, 2, 1], channels=[8, 16, 32, 64])


def convnext_cfg(arch=None, out_indices=(0, 1, 2, 3), **kwargs) -> dict:
    return dict(type='mmpretrain.ConvNeXt', arch=arch or TINY_CONVNEXT,
                out_indices=list(out_indices), gap_before_final_norm=False,
                drop_path_rate=0.0, **kwargs)


def qnv2_cfg(backbone: dict, targets='convnext',
             init_cfg: Optional[dict] = None, **adapter) -> dict:
    return dict(type='QuadraNetV2', backbone=backbone, targets=targets,
                adapter=dict(dict(rank=4, kernel_size=3, dilation=2),
                             **adapter),
                init_cfg=init_cfg)


def save_zoo_checkpoint(model: torch.nn.Module, path: str) -> str:
    """Write ``model`` in the mmpretrain/mmdet model-zoo layout."""
    torch.save({'state_dict': model.state_dict(),
                'meta': {'mmpretrain_version': '1.2.0', 'epoch': 300}}, path)
    return path


def demo_detector_cfg() -> Config:
    return Config.fromfile(DEMO_DETECTOR)
