"""Small real models and checkpoints shared by the integration tests."""

import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')
DEMO_DETECTOR = osp.join(CONFIGS, 'demo', 'mask-rcnn_qnv2-r18_fpn_shapes.py')

# A two-block-per-stage ConvNeXt small enough for per-test training runs.
TINY_CONVNEXT = dict(depths=[1, 1, 2, 1], channels=[8, 16, 32, 64])


PRETRAINED_KEYS = {
    'type',
    'checkpoint',
    'prefix',
    'map_location',
    'allow_missing',
    'allow_unexpected',
}


def without_pretrained(cfg):
    """Switch every Pretrained init_cfg off (nothing may be downloaded),
    after checking that it holds only keys the loaders take."""
    if isinstance(cfg, dict):
        if isinstance(cfg.get('init_cfg'), dict) and cfg['init_cfg'].get('type') == 'Pretrained':
            assert set(cfg['init_cfg']) <= PRETRAINED_KEYS, cfg['init_cfg']
            cfg['init_cfg'] = None
        for value in cfg.values():
            without_pretrained(value)
    elif isinstance(cfg, list):
        for value in cfg:
            without_pretrained(value)


def tiny_training(num_samples: int) -> dict:
    """``train_dataloader`` and ``optim_wrapper`` of a Runner over
    ``num_samples`` random 3x32x32 inputs, batch 2, in order, AdamW lr 1e-2."""
    data = [dict(inputs=torch.randn(3, 32, 32), targets=torch.randn(1)) for _ in range(num_samples)]
    return dict(
        train_dataloader=dict(
            dataset=data,
            batch_size=2,
            collate_fn=dict(type='default_collate'),
            sampler=dict(type='DefaultSampler', shuffle=False),
        ),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
    )


def convnext_cfg(arch=None, out_indices=(0, 1, 2, 3), **kwargs) -> dict:
    return dict(
        type='mmpretrain.ConvNeXt',
        arch=arch or TINY_CONVNEXT,
        out_indices=list(out_indices),
        gap_before_final_norm=False,
        drop_path_rate=0.0,
        **kwargs,
    )


def qnv2_cfg(
    backbone: dict, targets='convnext', init_cfg: Optional[dict] = None, **adapter
) -> dict:
    return dict(
        type='QuadraNetV2',
        backbone=backbone,
        targets=targets,
        adapter=dict(dict(rank=4, kernel_size=3, dilation=2), **adapter),
        init_cfg=init_cfg,
    )


def save_zoo_checkpoint(model: torch.nn.Module, path: str) -> str:
    """Write ``model`` in the mmpretrain/mmdet model-zoo layout."""
    torch.save(
        {'state_dict': model.state_dict(), 'meta': {'mmpretrain_version': '1.2.0', 'epoch': 300}},
        path,
    )
    return path


def demo_detector_cfg() -> Config:
    return Config.fromfile(DEMO_DETECTOR)


def detector_run_env(
    root, img: int = 128, num_train: int = 16, num_val: int = 8, seed: int = 0
) -> dict:
    """Small shapes data, a first-order ResNet-18 classifier checkpoint in
    the mmpretrain model-zoo layout (initialised from ``seed``), and the
    ``--cfg-options`` pointing the demo detector config at them and setting
    its ``randomness.seed`` (scored on its training images, so that a short
    schedule still gives a non-zero mAP)."""
    import os
    import sys

    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as CLS_MODELS

    from quadra_mm.datasets import make_demo_data

    data = make_demo_data(
        str(root / 'shapes'),
        num_train=num_train,
        num_val=num_val,
        img_size=img,
        crop_size=32,
        seed=3,
    )
    init_default_scope('mmpretrain')
    classifier = CLS_MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=6, in_channels=512),
        )
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier.init_weights()
    ckpt = save_zoo_checkpoint(classifier, str(root / 'first_order.pth'))
    data_root = data['out'] + '/'
    train_ann = 'annotations/instances_train.json'
    options = [
        f'model.backbone.init_cfg.checkpoint={ckpt}',
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.ann_file={train_ann}',
        f'test_dataloader.dataset.ann_file={train_ann}',
        'val_dataloader.dataset.data_prefix.img=train/',
        'test_dataloader.dataset.data_prefix.img=train/',
        f'val_evaluator.ann_file={data_root}{train_ann}',
        f'test_evaluator.ann_file={data_root}{train_ann}',
        f'train_dataloader.dataset.pipeline.2.scale=({img},{img})',
        f'test_dataloader.dataset.pipeline.1.scale=({img},{img})',
        f'val_dataloader.dataset.pipeline.1.scale=({img},{img})',
        f'randomness.seed={seed}',
    ]
    env = dict(
        os.environ,
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
        OMP_NUM_THREADS='1',
        PYTHONUNBUFFERED='1',
    )
    return dict(root=root, options=options, env=env)


def run_tool(args, env, cwd=ROOT, timeout=1200) -> str:
    """Run a tool to completion; its output, or a failure showing its end."""
    import subprocess

    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def training_losses(work_dir) -> dict:
    """``{iteration: loss}`` from the training log records mmengine's
    LoggerHook wrote under ``work_dir`` (``<timestamp>/vis_data/
    scalars.json``, one record per logged iteration)."""
    import glob
    import json

    losses = {}
    for path in glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for record in map(json.loads, filter(str.strip, f)):
                if 'loss' in record:
                    losses[record['iter']] = record['loss']
    return losses


class RecordChanges(Hook):
    """After each iteration, which parameters the step changed."""

    priority = 'LOWEST'

    def __init__(self):
        self.changed = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._before = {n: p.detach().clone() for n, p in runner.model.named_parameters()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.changed[runner.iter + 1] = {
            n for n, p in runner.model.named_parameters() if not torch.equal(p, self._before[n])
        }
