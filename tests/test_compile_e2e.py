"""mmengine's own switch: ``compile = True`` in the config compiles the demo QNv2 Mask
R-CNN's ``train_step`` (torch.compile, default inductor backend) in ``tools/train.py``;
the trained checkpoint is then scored by ``tools/test.py``. Dynamo's graph-break log
must not name any quadra_mm frame: the detector breaks elsewhere (data-dependent
proposals, losses, the optimizer), never at a quadratic layer. The config is used as
it is, ``paramwise_cfg`` included (one ``ConfigDict`` param group per parameter from
mmengine's constructor, which ``QuadraticStageHook`` turns into plain dicts)."""
import re
import sys

import pytest

from quadra_mm.cli import latest_metrics

from helpers import DEMO_DETECTOR, detector_run_env, run_tool

pytestmark = pytest.mark.slow

ITERS = 4


def test_compile_true_trains_and_tests_the_demo_detector(tmp_path):
    run_env = detector_run_env(tmp_path, img=96, num_train=8, num_val=4)
    env = dict(run_env['env'], TORCH_LOGS='graph_breaks')
    work = tmp_path / 'compiled'
    schedule = [f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
                f'default_hooks.checkpoint.interval={ITERS}', f'custom_hooks.0.switch_iter={ITERS // 2}',
                'param_scheduler.0.end=2', 'param_scheduler.1.begin=2', f'param_scheduler.1.end={ITERS}',
                'train_dataloader.batch_size=2']
    log = run_tool([sys.executable, 'tools/train.py', DEMO_DETECTOR, '--work-dir', str(work / 'train'),
                    '--cfg-options', *run_env['options'], *schedule, 'compile=True'], env)
    dumped = next((work / 'train').glob('*.py')).read_text()
    assert re.search(r'^compile = True$', dumped, re.M)
    assert 'Graph break' in log  # dynamo traced the train step and logged its breaks
    breaks = log.split('Graph break')[1:]
    assert not [b for b in breaks if 'quadra_mm' in b.split('\n\n')[0]], breaks
    ckpt = work / 'train' / f'iter_{ITERS}.pth'
    assert ckpt.is_file()

    run_tool([sys.executable, 'tools/test.py', DEMO_DETECTOR, str(ckpt), '--work-dir', str(work / 'test'),
              '--cfg-options', *run_env['options'], 'model.test_cfg.rcnn.score_thr=0.0', 'compile=True'],
             env)
    metrics = latest_metrics(str(work / 'test'), 'coco/bbox_mAP')
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
