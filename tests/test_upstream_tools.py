"""mmdet's and mmpretrain's own tools on the artefacts of a QNv2 run: a
miniature of the demo detector trained with tools/train.py, then
publish_model (mmdet, mmpretrain), analyze_logs (mmdet), DetInferencer with
a config and with the weights only, and vis_scheduler on the demo's
classifier config."""

import argparse
import ast
import glob
import json
import math
import os.path as osp
import sys
import textwrap
import time
from collections import defaultdict
from unittest.mock import MagicMock

import mmdet
import mmpretrain
import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from mmdet.apis import inference_detector, init_detector
from mmengine.config import Config, DictAction

import quadra_mm  # noqa: F401

from helpers import CONFIGS, DEMO_DETECTOR, ROOT, detector_run_env, run_tool

pytestmark = pytest.mark.slow

IMG = 128
ITERS = 4
MMDET_TOOLS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')
MMPRETRAIN_TOOLS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A QNv2 demo detector trained for a few iterations on a small shapes
    set with tools/train.py: its work dir, checkpoint, options and an image."""
    env = detector_run_env(tmp_path_factory.mktemp('tools'), img=IMG, num_train=8, num_val=4)
    options = env['options'] + [
        # every detection kept: the inferencers have something to compare
        'model.test_cfg.rcnn.score_thr=0.0',
        'model.test_cfg.rcnn.max_per_img=20',
    ]
    work = env['root'] / 'train'
    run_tool(
        [
            sys.executable,
            'tools/train.py',
            DEMO_DETECTOR,
            '--work-dir',
            str(work),
            '--cfg-options',
            *options,
            f'train_cfg.max_iters={ITERS}',
            f'train_cfg.val_interval={ITERS}',
            f'default_hooks.checkpoint.interval={ITERS}',
            'default_hooks.logger.interval=1',
            'custom_hooks.0.switch_iter=2',
            'custom_hooks.1.interval=1',
            'param_scheduler.0.end=2',
            'param_scheduler.1.begin=2',
            f'param_scheduler.1.end={ITERS}',
        ],
        env['env'],
    )
    image = sorted((env['root'] / 'shapes' / 'val').glob('*.png'))[0]
    return dict(
        env=env['env'],
        work=work,
        options=options,
        image=str(image),
        checkpoint=str(work / f'iter_{ITERS}.pth'),
    )


def test_checkpoints_load_with_plain_torch_load(run):
    checkpoint = torch.load(run['checkpoint'])  # weights_only=True
    assert any('quad_u' in k for k in checkpoint['state_dict'])
    assert 'QuadraNetV2' in checkpoint['message_hub']['runtime_info']['cfg']


@pytest.mark.parametrize('tools', [MMDET_TOOLS, MMPRETRAIN_TOOLS], ids=['mmdet', 'mmpretrain'])
def test_publish_model(run, tools, tmp_path):
    published = tmp_path / 'published.pth'
    run_tool(
        [
            sys.executable,
            osp.join(tools, 'model_converters', 'publish_model.py'),
            run['checkpoint'],
            str(published),
        ],
        run['env'],
    )
    # mmdet's tool renames the file with a `mv` it does not wait for.
    for _ in range(50):
        final = glob.glob(str(tmp_path / 'published?*.pth'))
        if final:
            break
        time.sleep(0.1)
    [final] = final
    original = torch.load(run['checkpoint'])['state_dict']
    state = torch.load(final)['state_dict']
    adapters = [k for k in original if 'quad_u' in k]
    assert adapters
    for key in adapters:
        assert torch.equal(state[key], original[key])


ANALYZE_LOGS = osp.join(MMDET_TOOLS, 'analysis_tools', 'analyze_logs.py')


def _train_log(run) -> str:
    [log] = glob.glob(str(run['work'] / '*' / 'vis_data' / '2*.json'))
    return log


def test_analyze_logs_reads_the_train_lines(run):
    """mmdet's analyze_logs parser: the QNv2 statistics are train values,
    each train line keeps its `iter`, the mAP is validation. The tool's own
    `load_json_logs`, taken from its file, so that its result can be read
    (the CLI is run in the next test)."""
    tree = ast.parse(open(ANALYZE_LOGS).read())
    [function] = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == 'load_json_logs'
    ]
    namespace = dict(json=json, defaultdict=defaultdict)
    exec(compile(ast.Module([function], type_ignores=[]), ANALYZE_LOGS, 'exec'), namespace)
    [log_dict] = namespace['load_json_logs']([_train_log(run)])
    logged = log_dict[1]
    assert logged['iter'] == logged['step'] == list(range(1, ITERS + 1))
    assert len(logged['time']) == ITERS
    assert len(logged['qnv2_stage1_ratio']) == ITERS
    assert len(logged['bbox_mAP']) == 1


def test_analyze_logs_cli(run, tmp_path):
    out = tmp_path / 'ratio.png'
    run_tool(
        [
            sys.executable,
            ANALYZE_LOGS,
            'plot_curve',
            _train_log(run),
            '--keys',
            'loss',
            'qnv2_stage1_ratio',
            '--out',
            str(out),
            '--backend',
            'agg',
        ],
        run['env'],
    )
    assert out.stat().st_size > 0
    assert 'average iter time' in run_tool(
        [sys.executable, ANALYZE_LOGS, 'cal_train_time', _train_log(run)], run['env']
    )


_INFER = textwrap.dedent("""
    import argparse, json, sys
    from mmdet.apis import DetInferencer
    from mmengine.config import Config, DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('checkpoint')
    parser.add_argument('image')
    parser.add_argument('config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    # Weights only first: the config comes out of the checkpoint, which is
    # loaded before that config's custom_imports bring in quadra_mm.
    assert 'quadra_mm' not in sys.modules
    weights_only = DetInferencer(weights=args.checkpoint, device='cpu')
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    with_config = DetInferencer(model=cfg, weights=args.checkpoint,
                                device='cpu')
    for name, inferencer in (('weights only', weights_only),
                             ('with config', with_config)):
        [pred] = inferencer(args.image, no_save_vis=True)['predictions']
        print(f'{name}:', json.dumps(dict(labels=pred['labels'],
                                          scores=pred['scores'],
                                          bboxes=pred['bboxes'])))
""")


def _predictions(log: str, name: str) -> dict:
    return json.loads(
        next(line for line in log.splitlines() if line.startswith(f'{name}:'))[len(name) + 1 :]
    )


def test_det_inferencer_with_a_config_and_with_the_weights_only(run):
    """DetInferencer(weights=...) in a fresh process, and with the config
    file plus the run's options: the same predictions."""
    log = run_tool(
        [
            sys.executable,
            '-c',
            _INFER,
            run['checkpoint'],
            run['image'],
            DEMO_DETECTOR,
            '--cfg-options',
            *run['options'],
        ],
        run['env'],
    )
    with_config = _predictions(log, 'with config')
    assert with_config['labels']  # score_thr=0: there are detections
    assert _predictions(log, 'weights only') == with_config


def test_fuse_conv_bn_on_the_detector_keeps_its_predictions(run):
    """What mmdet's benchmark.py --fuse-conv-bn does to the model (mmcv's
    fuse_conv_bn after loading the checkpoint), on the trained detector."""
    cfg = Config.fromfile(DEMO_DETECTOR)
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *run['options']]).cfg_options)
    model = init_detector(cfg, run['checkpoint'], device='cpu')
    expected = inference_detector(model, run['image']).pred_instances
    fused = inference_detector(fuse_conv_bn(model), run['image']).pred_instances
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    assert len(expected) > 0
    torch.testing.assert_close(fused.scores, expected.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.bboxes, expected.bboxes, rtol=1e-4, atol=1e-3)


def test_vis_scheduler_draws_the_primary_learning_rate(tmp_path):
    """tools/vis_scheduler.py (mmpretrain's tool and flags) on the demo's
    QNv2 classifier config: stage 1 (epoch 0) has the primary terms frozen,
    stage 2 trains them at 0.1x the lr."""
    config = osp.join(CONFIGS, 'demo', 'qnv2-resnet18_1xb32_shapes-crops.py')
    out = tmp_path / 'lr.png'
    log = run_tool(
        [
            sys.executable,
            'tools/vis_scheduler.py',
            config,
            '-d',
            '64',
            '--not-show',
            '-s',
            str(out),
            '--cfg-options',
            f'work_dir={tmp_path}',
        ],
        env=None,
    )
    assert 'Learning Rate graph is saved' in log
    assert out.stat().st_size > 0

    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import vis_scheduler
    finally:
        sys.path.remove(osp.join(ROOT, 'tools'))
    upstream = vis_scheduler.load_upstream()
    vis_scheduler.patch(upstream)
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.log_level = str(tmp_path), 'WARNING'
    # no lr floor: the primary lr is then exactly 0.1x the other one
    cfg.param_scheduler[0].eta_min = 0

    class Batches(list):  # as vis_scheduler's FakeDataloader
        dataset = MagicMock(metainfo=None)

    lrs = upstream.simulate_train(Batches(range(2)), cfg, by_epoch=True)['lr']
    assert len(lrs) == 4  # 2 epochs of 2 iterations
    assert all(math.isnan(primary) for _, primary in lrs[:2])
    for other, primary in lrs[2:]:
        assert primary == pytest.approx(0.1 * other)
