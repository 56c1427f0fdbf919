"""Issue 9 end to end with the mm tools on the demo detector config (tiny
data, CPU): an interrupted run resumed with ``--resume`` ends bit-identical
to an uninterrupted one; checkpoints of only what trained load back over
their base; ``tools/export.py`` writes a pair ``tools/test.py`` scores the
same as the trained checkpoint."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint

import quadra_mm  # noqa: F401
from quadra_mm.cli import latest_metrics
from quadra_mm.models import load_trained_checkpoint

from helpers import DEMO_DETECTOR, ROOT, detector_run_env, run_tool

pytestmark = pytest.mark.slow

IMG = 96
ITERS = 8
SWITCH = 4  # first stage-2 iteration (0-based runner.iter)
CKPT_EVERY = 3  # checkpoints iter_3 (stage 1), iter_6, iter_8

SCHEDULE = [
    f'train_cfg.max_iters={ITERS}',
    'train_cfg.val_interval=1000',
    f'default_hooks.checkpoint.interval={CKPT_EVERY}',
    'default_hooks.logger.interval=1',
    f'custom_hooks.0.switch_iter={SWITCH}',
    'param_scheduler.0.end=2',
    'param_scheduler.1.begin=2',
    f'param_scheduler.1.end={ITERS}',
    # 12 images in batches of 2: an epoch ends at iteration 6, so the
    # resumed data stream crosses a sampler epoch.
    'train_dataloader.batch_size=2',
    'model.test_cfg.rcnn.score_thr=0.0',
]


@pytest.fixture(scope='module')
def run_env(tmp_path_factory):
    return detector_run_env(tmp_path_factory.mktemp('issue9'), img=IMG, num_train=12, num_val=4)


def _train_args(run_env, work, resume=False):
    return [
        sys.executable,
        'tools/train.py',
        DEMO_DETECTOR,
        '--work-dir',
        str(work),
        *(['--resume'] if resume else []),
        '--cfg-options',
        *run_env['options'],
        *SCHEDULE,
    ]


@pytest.fixture(scope='module')
def uninterrupted(run_env):
    """One run of all iterations."""
    work = run_env['root'] / 'uninterrupted'
    run_tool(_train_args(run_env, work), run_env['env'])
    return work


def _kill_when(run_env, work, ready, timeout=600):
    """Start a training run and SIGKILL it as soon as ``ready(log)``."""
    work.mkdir(parents=True)
    log_path = work / 'console.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            _train_args(run_env, work),
            cwd=ROOT,
            env=run_env['env'],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.time() + timeout
    try:
        while not ready(log_path.read_text()):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, 'the run never got there'
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return (work / 'last_checkpoint').read_text().strip()


def _weights(path):
    return _load_checkpoint(str(path), map_location='cpu')['state_dict']


def _assert_bit_identical(path_a, path_b):
    a, b = _weights(path_a), _weights(path_b)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:5]}'


@pytest.mark.parametrize('window', ['stage2', 'switch'])
def test_sigkill_then_resume_is_bit_identical(run_env, uninterrupted, window):
    work = run_env['root'] / f'killed_{window}'
    if window == 'stage2':
        # Killed after the iter_6 checkpoint: resumes in stage 2, with the
        # sampler's next epoch still ahead.
        last_file = work / 'last_checkpoint'
        last = _kill_when(
            run_env, work, lambda log: last_file.is_file() and 'iter_6' in last_file.read_text()
        )
        assert last.endswith('iter_6.pth')
    else:
        # Killed after the stage switch at iteration 4 but before iter_6:
        # resumes from the stage-1 checkpoint iter_3 and switches again.
        last = _kill_when(run_env, work, lambda log: f'phase 2 from iteration {SWITCH}' in log)
        assert last.endswith('iter_3.pth'), last
    log = run_tool(_train_args(run_env, work, resume=True), run_env['env'])
    assert 'ExactResumeHook: continuing the data stream' in log
    _assert_bit_identical(uninterrupted / f'iter_{ITERS}.pth', work / f'iter_{ITERS}.pth')


def test_checkpoint_of_what_trained_round_trips(run_env, uninterrupted):
    full = uninterrupted / f'iter_{ITERS}.pth'
    adapter = uninterrupted / f'adapter_iter_{ITERS}.pth'
    stage1 = uninterrupted / f'adapter_iter_{CKPT_EVERY}.pth'
    # Plain torch.load reads them (with WeightsOnlyCheckpointHook in the
    # config), the resume state included.
    state = torch.load(full, weights_only=True)['exact_resume']
    assert state['iter'] == ITERS and len(state['rng']) == 1
    assert 'trained_only' in torch.load(adapter, weights_only=True)['meta']
    sizes = {p.name: p.stat().st_size for p in (full, adapter, stage1)}
    print('checkpoint sizes (bytes):', sizes)
    # In stage 1 the primary backbone weights did not train: left out.
    assert sizes[stage1.name] < 0.6 * sizes[adapter.name] < sizes[full.name]

    cfg = Config.fromfile(DEMO_DETECTOR)
    cfg.merge_from_dict(dict(o.split('=', 1) for o in run_env['options'] if o.startswith('model.')))
    init_default_scope('mmdet')
    for path, reference in ((adapter, full), (stage1, uninterrupted / f'iter_{CKPT_EVERY}.pth')):
        model = MODELS.build(cfg.model)
        load_trained_checkpoint(model, str(path))
        expected = _weights(reference)
        got = model.state_dict()
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in got), path


def test_exported_and_trained_only_checkpoints_score_the_same(run_env, uninterrupted, tmp_path):
    ckpt = uninterrupted / f'iter_{ITERS}.pth'
    out = run_tool(
        [
            sys.executable,
            'tools/export.py',
            DEMO_DETECTOR,
            str(ckpt),
            str(tmp_path / 'exported'),
            '--repeats',
            '2',
            '--cfg-options',
            *run_env['options'],
            *SCHEDULE,
        ],
        run_env['env'],
    )
    assert 'speed-up' in out, out
    exported_cfg = tmp_path / 'exported' / 'mask-rcnn_qnv2-r18_fpn_shapes_exported.py'
    exported_ckpt = exported_cfg.with_suffix('.pth')
    assert 'ExportedQuadraNet' in exported_cfg.read_text()

    scores = []
    trained_options = [*run_env['options'], *SCHEDULE]
    for config, checkpoint, options in (
        (DEMO_DETECTOR, ckpt, trained_options),
        (str(exported_cfg), exported_ckpt, []),
        # AdapterCheckpointHook loads its file over the base.
        (DEMO_DETECTOR, uninterrupted / f'adapter_iter_{ITERS}.pth', trained_options),
    ):
        work = tmp_path / f'test_{len(scores)}'
        run_tool(
            [
                sys.executable,
                'tools/test.py',
                config,
                str(checkpoint),
                '--work-dir',
                str(work),
                *(['--cfg-options', *options] if options else []),
            ],
            run_env['env'],
        )
        scores.append(latest_metrics(str(work), 'coco/bbox_mAP'))
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50'):
        assert abs(scores[0][key] - scores[1][key]) <= 1e-3, (key, scores)
        assert scores[2][key] == scores[0][key], (key, scores)

    # mmdet's inference APIs load the pair as well.
    from mmdet.apis import DetInferencer, inference_detector, init_detector

    image = str(sorted((run_env['root'] / 'shapes' / 'train').glob('*.png'))[0])
    model = init_detector(str(exported_cfg), str(exported_ckpt), device='cpu')
    assert model.dataset_meta['classes'][0] == 'circle'
    found = inference_detector(model, image).pred_instances
    inferencer = DetInferencer(
        model=str(exported_cfg), weights=str(exported_ckpt), device='cpu', show_progress=False
    )
    predicted = inferencer(image, no_save_vis=True, no_save_pred=True)
    assert len(found) == len(predicted['predictions'][0]['labels']) > 0
