"""End to end with the mm tools on generated data: tools/train.py then
tools/test.py, single process and under torchrun (2 CPU processes, gloo)."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS as CLS_MODELS

import quadra_mm  # noqa: F401
from quadra_mm.cli import latest_metrics
from quadra_mm.datasets import make_demo_data

from helpers import DEMO_DETECTOR, ROOT, save_zoo_checkpoint

pytestmark = pytest.mark.slow

IMG = 128
TRAIN_ITERS = 160


@pytest.fixture(scope='module')
def run_env(tmp_path_factory):
    """Small shapes data, a first-order classifier checkpoint in the
    mmpretrain model-zoo layout, and the config overrides pointing at them."""
    root = tmp_path_factory.mktemp('e2e')
    data = make_demo_data(str(root / 'shapes'), num_train=16, num_val=8,
                          img_size=IMG, crop_size=32, seed=3)
    init_default_scope('mmpretrain')
    classifier = CLS_MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=6, in_channels=512)))
    classifier.init_weights()
    ckpt = save_zoo_checkpoint(classifier, str(root / 'first_order.pth'))
    data_root = data['out'] + '/'
    # A smoke test of the tools, not of generalisation: the detector is
    # scored on the images it was trained on, so that a short schedule
    # still gives a clearly non-zero mAP.
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
        f'train_dataloader.dataset.pipeline.2.scale=({IMG},{IMG})',
        f'test_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})',
        f'val_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})',
    ]
    env = dict(os.environ, PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'], OMP_NUM_THREADS='1')
    return dict(root=root, options=options, env=env)


def _schedule(iters):
    warmup = min(10, iters // 2)
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            f'custom_hooks.0.switch_iter={iters // 2}',
            f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={iters}',
            'optim_wrapper.optimizer.lr=0.002']


def _run(args, env, cwd=ROOT):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_train_then_test_with_the_mm_tools(run_env):
    work = run_env['root'] / 'single'
    log = _run([sys.executable, 'tools/train.py', DEMO_DETECTOR,
                '--work-dir', str(work / 'train'), '--cfg-options',
                *run_env['options'], *_schedule(TRAIN_ITERS)], run_env['env'])
    assert 'QuadraticStageHook: stage 2 from iteration' in log
    assert 'quadratic adapter tensors' in log  # left at zero init, logged
    ckpt = work / 'train' / f'iter_{TRAIN_ITERS}.pth'
    assert ckpt.is_file()

    _run([sys.executable, 'tools/test.py', DEMO_DETECTOR, str(ckpt),
          '--work-dir', str(work / 'test'), '--show-dir', 'vis',
          '--cfg-options', *run_env['options']], run_env['env'])
    metrics = latest_metrics(str(work / 'test'), 'coco/bbox_mAP')
    assert metrics['coco/bbox_mAP'] > 0.05, metrics
    assert metrics['coco/segm_mAP'] > 0.05, metrics
    drawn = glob.glob(str(work / 'test' / '*' / 'vis' / '*.png'))
    assert len(drawn) == 16


def test_tools_under_torchrun_with_two_processes(run_env):
    work = run_env['root'] / 'dist'
    env = dict(run_env['env'], PORT='29631')
    log = _run(['bash', 'tools/dist_train.sh', DEMO_DETECTOR, '2',
                '--work-dir', str(work / 'train'), '--cfg-options',
                *run_env['options'], *_schedule(4)], env)
    assert 'Distributed training: True' in log
    ckpt = work / 'train' / 'iter_4.pth'
    assert ckpt.is_file()
    # After 4 iterations no score passes the default 0.05 threshold; with
    # none, CocoMetric has nothing to score across the two ranks' results.
    _run(['bash', 'tools/dist_test.sh', DEMO_DETECTOR, str(ckpt), '2',
          '--work-dir', str(work / 'test'), '--cfg-options',
          'model.test_cfg.rcnn.score_thr=0.0', *run_env['options']], env)
    metrics = latest_metrics(str(work / 'test'), 'coco/bbox_mAP')
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
