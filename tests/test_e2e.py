"""End to end with the mm tools on generated data: tools/train.py then
tools/test.py, single process and under torchrun (2 CPU processes, gloo)."""
import glob
import sys

import pytest

import quadra_mm  # noqa: F401
from quadra_mm.cli import latest_metrics

from helpers import DEMO_DETECTOR, detector_run_env, run_tool

pytestmark = pytest.mark.slow

IMG = 128
TRAIN_ITERS = 160


@pytest.fixture(scope='module')
def run_env(tmp_path_factory):
    return detector_run_env(tmp_path_factory.mktemp('e2e'), img=IMG)


def _schedule(iters):
    warmup = min(10, iters // 2)
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            f'custom_hooks.0.switch_iter={iters // 2}',
            f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={iters}',
            'optim_wrapper.optimizer.lr=0.002']


def test_train_then_test_with_the_mm_tools(run_env):
    work = run_env['root'] / 'single'
    log = run_tool([sys.executable, 'tools/train.py', DEMO_DETECTOR,
                '--work-dir', str(work / 'train'), '--cfg-options',
                *run_env['options'], *_schedule(TRAIN_ITERS)], run_env['env'])
    assert 'QuadraticStageHook: stage 2 from iteration' in log
    assert 'quadratic adapter tensors' in log  # left at zero init, logged
    ckpt = work / 'train' / f'iter_{TRAIN_ITERS}.pth'
    assert ckpt.is_file()

    run_tool([sys.executable, 'tools/test.py', DEMO_DETECTOR, str(ckpt),
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
    log = run_tool(['bash', 'tools/dist_train.sh', DEMO_DETECTOR, '2',
                '--work-dir', str(work / 'train'), '--cfg-options',
                *run_env['options'], *_schedule(4)], env)
    assert 'Distributed training: True' in log
    ckpt = work / 'train' / 'iter_4.pth'
    assert ckpt.is_file()
    # After 4 iterations no score passes the default 0.05 threshold; with
    # none, CocoMetric has nothing to score across the two ranks' results.
    run_tool(['bash', 'tools/dist_test.sh', DEMO_DETECTOR, str(ckpt), '2',
          '--work-dir', str(work / 'test'), '--cfg-options',
          'model.test_cfg.rcnn.score_thr=0.0', *run_env['options']], env)
    metrics = latest_metrics(str(work / 'test'), 'coco/bbox_mAP')
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
