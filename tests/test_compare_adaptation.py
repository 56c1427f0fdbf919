"""tools/analysis_tools/compare_adaptation.py and quadra_mm.comparison: the
arms as config edits, bad input refused before anything trains, the verdict
rule, and (slow) real comparisons of the demo detector and of an mmpretrain
classifier, their cache, and one arm under torchrun (2 CPU processes, gloo)."""

import argparse
import copy
import functools
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import quadra_mm  # noqa: F401
from quadra_mm.comparison import (
    BUILTIN_ARMS,
    ArmError,
    ComparisonError,
    parse_arm,
    parse_arms,
    prepare,
    verdict,
)
from quadra_mm.comparison.arms import arm_config
from quadra_mm.comparison.cache import fingerprint

from helpers import CONFIGS, DEMO_DETECTOR, ROOT, detector_run_env, run_tool

TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'compare_adaptation.py')
DEMO_CLASSIFIER = osp.join(CONFIGS, 'demo', 'qnv2-resnet18_1xb32_shapes-crops.py')
FIRST_ORDER_CLASSIFIER = osp.join(CONFIGS, 'demo', 'resnet18_1xb32_shapes-crops.py')


@functools.lru_cache(maxsize=None)
def _parsed(path: str) -> Config:
    return Config.fromfile(path)


def _detector() -> Config:
    return copy.deepcopy(_parsed(DEMO_DETECTOR))


# ---------------------------------------------------------------- the arms
def test_full_ft_is_the_wrapped_first_order_backbone_from_the_same_checkpoint():
    cfg = arm_config(_detector(), BUILTIN_ARMS['full-ft'])
    assert cfg.model.backbone.type == 'ResNet'
    assert cfg.model.backbone.depth == 18
    assert cfg.model.backbone.init_cfg == _detector().model.backbone.init_cfg
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'QuadraticStageHook' not in hooks and 'AdapterCheckpointHook' not in hooks
    assert 'ExactResumeHook' in hooks  # not about adapters: kept


def _stage_hook(cfg: Config) -> dict:
    (hook,) = [h for h in cfg.custom_hooks if h['type'] == 'QuadraticStageHook']
    return hook


def test_phase1_arms_switch_after_the_last_iteration():
    """The phase-1 arms move the stage switch past the last iteration;
    ``qnv2-adapters`` and ``lora`` put ``U`` at the common lr (``u_lr_mult``
    1), ``qnv2-u-lr`` at ``M``; ``qnv2-stages`` and ``norms-head`` (``U``
    frozen) keep the config's (the demo detector's 16)."""
    assert _stage_hook(_detector()).u_lr_mult == 16.0
    u_lr_mults = {'qnv2-adapters': 1.0, 'lora': 1.0, 'norms-head': 16.0, 'qnv2-u-lr': 8}
    for name, u_lr_mult in u_lr_mults.items():
        cfg = arm_config(_detector(), BUILTIN_ARMS[name], u_lr_mult=8)
        hook = _stage_hook(cfg)
        assert hook.switch_iter == cfg.train_cfg.max_iters, name
        assert hook.u_lr_mult == u_lr_mult, name
    stages = arm_config(_detector(), BUILTIN_ARMS['qnv2-stages'], u_lr_mult=8)
    assert stages.custom_hooks == _detector().custom_hooks
    assert _stage_hook(stages).u_lr_mult == 16.0
    lora = arm_config(_detector(), BUILTIN_ARMS['lora'])
    assert lora.model.backbone.adapter.interaction == 'linear'
    u_lr = arm_config(_detector(), BUILTIN_ARMS['qnv2-u-lr'], u_lr_mult=8)
    assert u_lr.optim_wrapper == _detector().optim_wrapper  # its constructor's groups
    # a config without a stage hook gets one, with the arm's multiplier
    no_hook = _detector()
    no_hook.custom_hooks = [h for h in no_hook.custom_hooks if h['type'] != 'QuadraticStageHook']
    for name, u_lr_mult in (('qnv2-u-lr', 8), ('qnv2-adapters', 1.0)):
        cfg = arm_config(no_hook, BUILTIN_ARMS[name], u_lr_mult=8)
        assert cfg.custom_hooks[-1] == dict(
            type='QuadraticStageHook', switch_iter=cfg.train_cfg.max_iters, u_lr_mult=u_lr_mult
        )
    # U's multiplier given twice would compound
    twice = _detector()
    twice.optim_wrapper.paramwise_cfg.custom_keys = {'quad_u.weight': dict(lr_mult=4)}
    with pytest.raises(ArmError, match=r"arm qnv2-u-lr: .*custom_keys\['quad_u.weight'\]"):
        arm_config(twice, BUILTIN_ARMS['qnv2-u-lr'], u_lr_mult=8)
    twice.optim_wrapper.paramwise_cfg.custom_keys = {'quad_u': dict(decay_mult=0.0)}
    assert arm_config(twice, BUILTIN_ARMS['qnv2-u-lr'], u_lr_mult=8)  # no lr_mult: kept
    frozen = arm_config(_detector(), BUILTIN_ARMS['norms-head'])
    assert frozen.custom_hooks[-1] == dict(type='FrozenAdaptersHook')
    # epoch-based configs switch at max_epochs
    cls = arm_config(copy.deepcopy(_parsed(DEMO_CLASSIFIER)), BUILTIN_ARMS['qnv2-adapters'])
    hook = _stage_hook(cls)
    assert hook.switch_epoch == cls.train_cfg.max_epochs and 'switch_iter' not in hook


def test_lora_has_the_placement_and_parameter_count_of_qnv2():
    from mmdet.registry import MODELS

    init_default_scope('mmdet')
    counts = {}
    for name in ('lora', 'qnv2-adapters'):
        cfg = arm_config(_detector(), BUILTIN_ARMS[name])
        backbone = dict(cfg.model.backbone.to_dict(), init_cfg=None)
        model = MODELS.build(backbone)
        counts[name] = {n: p.shape for n, p in model.named_parameters()}
    assert counts['lora'] == counts['qnv2-adapters']


def test_user_arms_are_overrides():
    arm = parse_arm('rank16:model.backbone.adapter.rank=16,optim_wrapper.optimizer.lr=0.01')
    cfg = arm.apply(_detector())
    assert cfg.model.backbone.adapter.rank == 16
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    stages = parse_arm('late:model.backbone.stages=[2,3]')
    assert stages.apply(_detector()).model.backbone.stages == [2, 3]
    with pytest.raises(ArmError, match='unknown arm'):
        parse_arm('qnv3')
    with pytest.raises(ArmError, match='name:key=value'):
        parse_arm('mine:rank')
    with pytest.raises(ArmError, match='built-in'):
        parse_arm('lora:model.backbone.adapter.rank=4')
    with pytest.raises(ArmError, match='given twice'):
        parse_arms(['lora', 'lora'])


def test_fingerprint_ignores_run_names_only():
    cfg = _detector()
    other = Config(cfg.to_dict())
    other.work_dir, other.experiment_name = '/elsewhere', 'x'
    assert fingerprint(cfg, launcher='none') == fingerprint(other, launcher='none')
    assert fingerprint(cfg, launcher='none') != fingerprint(cfg, launcher='pytorch')
    other.optim_wrapper.optimizer.lr = 0.5
    assert fingerprint(cfg, launcher='none') != fingerprint(other, launcher='none')


# ------------------------------------------------------ refused before training
@pytest.fixture(scope='module')
def detector_env(tmp_path_factory):
    return detector_run_env(tmp_path_factory.mktemp('compare'), img=64, num_train=4, num_val=2)


def _options(run_env) -> dict:
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='options')(None, namespace, run_env['options'])
    return namespace.options


def _prepare(tmp_path, config=DEMO_DETECTOR, **kwargs):
    kwargs.setdefault('arms', ['full-ft', 'qnv2-adapters'])
    kwargs.setdefault('seeds', [0])
    return prepare(config, work_dir=str(tmp_path / 'work'), **kwargs)


def test_bad_input_is_refused_before_anything_trains(tmp_path, detector_env):
    options = _options(detector_env)
    assert _prepare(tmp_path, cfg_options=options).metric == 'coco/bbox_mAP'
    with pytest.raises(ComparisonError, match="model.backbone.type is 'ResNet'"):
        _prepare(tmp_path, FIRST_ORDER_CLASSIFIER)
    with pytest.raises(ArmError, match="unknown arm 'qnv3'"):
        _prepare(tmp_path, cfg_options=options, arms=['full-ft', 'qnv3'])
    with pytest.raises(
        ComparisonError,
        match=r'--metric coco/keypoints_mAP.*produces '
        r"\['coco/bbox_mAP'",
    ):
        _prepare(tmp_path, cfg_options=options, metric='coco/keypoints_mAP')
    with pytest.raises(
        ComparisonError, match='model.backbone.init_cfg.checkpoint = work_dirs/demo'
    ):
        _prepare(tmp_path)  # the config's own checkpoint is not there
    without_test = tmp_path / 'no_test.py'
    without_test.write_text(
        f'_base_ = {DEMO_DETECTOR!r}\ntest_dataloader = None\ntest_evaluator = None\n'
    )
    with pytest.raises(ComparisonError, match='no test split'):
        _prepare(
            tmp_path,
            str(without_test),
            cfg_options={k: v for k, v in options.items() if not k.startswith('test_')},
        )
    with pytest.raises(ComparisonError, match='--reference lora'):
        _prepare(tmp_path, cfg_options=options, reference='lora')
    # the command line: an error message, nothing written
    refused = subprocess.run(
        [
            sys.executable,
            TOOL,
            DEMO_DETECTOR,
            '--arms',
            'full-ft',
            'qnv3',
            '--work-dir',
            str(tmp_path / 'cli'),
        ],
        cwd=ROOT,
        env=detector_env['env'],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "unknown arm 'qnv3'" in refused.stderr and 'Traceback' not in refused.stderr
    assert not (tmp_path / 'cli').exists()


# --------------------------------------------------------------- the rule
def test_verdict_rule():
    control = [dict(seed=s, v=v) for s, v in enumerate([70.0, 71.0, 72.0])]

    def runs(*diffs):
        return [dict(seed=s, v=c['v'] + d) for s, (c, d) in enumerate(zip(control, diffs))]

    assert verdict(runs(1.0, 1.2, 0.8), control, 'v').startswith('**supported**: +1.00')
    assert 'clearly' in verdict(runs(-1.0, -1.2, -0.8), control, 'v')
    assert 'no gain' in verdict(runs(0.5, -1.0, 0.2), control, 'v')
    assert 'inconclusive' in verdict(runs(2.0, -1.0, 0.5), control, 'v')


# ----------------------------------------------------------- real comparisons
DETECTOR_ITERS = 4
DETECTOR_SCHEDULE = [
    f'train_cfg.max_iters={DETECTOR_ITERS}',
    f'train_cfg.val_interval={DETECTOR_ITERS}',
    f'default_hooks.checkpoint.interval={DETECTOR_ITERS}',
    'param_scheduler.0.end=2',
    'param_scheduler.1.begin=2',
    f'param_scheduler.1.end={DETECTOR_ITERS}',
    f'custom_hooks.0.switch_iter={DETECTOR_ITERS // 2}',
    f'custom_hooks.1.interval={DETECTOR_ITERS}',
    'optim_wrapper.optimizer.lr=0.002',
    # a few iterations in, no score passes the default 0.05
    'model.test_cfg.rcnn.score_thr=0.0',
    # mmengine pauses 2 s at each epoch end of an iteration-based loop
    'train_cfg.type=IterBasedTrainLoop',
    'train_dataloader.sampler.type=InfiniteSampler',
]


def _results(work) -> dict:
    with open(work / 'results.json') as f:
        return json.load(f)


@pytest.mark.slow
def test_detector_comparison_reports_and_reuses_every_run(tmp_path, detector_env):
    work = tmp_path / 'detector'
    arms = ['full-ft', 'norms-head', 'qnv2-adapters']
    command = [
        sys.executable,
        TOOL,
        DEMO_DETECTOR,
        '--arms',
        *arms,
        '--seeds',
        '0',
        '1',
        '--workers',
        '2',
        '--work-dir',
        str(work),
        '--cfg-options',
        *detector_env['options'],
        *DETECTOR_SCHEDULE,
    ]
    log = run_tool(command, detector_env['env'])
    assert '100.0 % |' in log and 'left 0:00' in log
    first = _results(work)
    assert (first['trained'], first['cached']) == (6, 0)
    assert first['reported'] == ['coco/bbox_mAP', 'coco/segm_mAP']
    runs = {arm: first['arms'][arm]['runs'] for arm in arms}
    assert [r['seed'] for r in runs['full-ft']] == [0, 1]
    for arm in arms:
        for run in runs[arm]:
            assert set(run['test']) >= {'coco/bbox_mAP', 'coco/segm_mAP'}
            assert run['flops'] > 0 and run['step_time'] > 0
    # full-ft: the first-order model; the adapters add parameters and FLOPs
    adapter = runs['qnv2-adapters'][0]['adapter_params']
    assert runs['full-ft'][0]['adapter_params'] == 0 and adapter > 0
    assert runs['qnv2-adapters'][0]['params'] == runs['full-ft'][0]['params'] + adapter
    assert runs['qnv2-adapters'][0]['flops'] > runs['full-ft'][0]['flops']
    # norms-head: the adapters never move (U stays 0): the rest of what
    # qnv2-adapters trains
    assert runs['norms-head'][0]['trained_adapter_params'] == 0
    assert runs['qnv2-adapters'][0]['trained_adapter_params'] > 0
    assert 0 < runs['norms-head'][0]['trained_params'] < runs['qnv2-adapters'][0]['trained_params']
    report = (work / 'report.md').read_text()
    for arm in arms:
        assert f'| {arm} | config |' in report
    assert report.count('n=2)') == 2  # a verdict per arm against full-ft
    assert (work / 'comparison.png').stat().st_size > 0
    # again: every run from the cache, the same numbers
    log = run_tool(command, detector_env['env'])
    assert log.count('(cached)') == 6
    again = _results(work)
    assert (again['trained'], again['cached']) == (0, 6)
    assert again['arms'] == first['arms']


def _classifier_env(detector_env, batch: int) -> list:
    """``--cfg-options`` of the demo QNv2 classifier on the generated crops,
    from the first-order checkpoint of ``detector_env``, 16 train images
    (``batch`` each step), 32x32."""
    root = str(detector_env['root'] / 'shapes' / 'crops') + '/'
    ckpt = str(detector_env['root'] / 'first_order.pth')
    return [
        f'model.backbone.init_cfg.checkpoint={ckpt}',
        f'model.head.init_cfg.checkpoint={ckpt}',
        *(
            f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        ),
        'train_dataloader.dataset.indices=16',
        f'train_dataloader.batch_size={batch}',
        *(
            f'{loader}.dataset.pipeline.1.scale=(32,32)'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        ),
    ]


@pytest.mark.slow
def test_classifier_comparison_sweeps_the_lr_on_val(tmp_path, detector_env):
    work = tmp_path / 'classifier'
    command = [
        sys.executable,
        TOOL,
        DEMO_CLASSIFIER,
        '--arms',
        'full-ft',
        'qnv2-u-lr',
        '--seeds',
        '0',
        '1',
        '--lrs',
        '1e-4',
        '1e-3',
        '--u-lr-mult',
        '4',
        '--workers',
        '2',
        '--work-dir',
        str(work),
        '--cfg-options',
        *_classifier_env(detector_env, batch=8),
    ]
    log = run_tool(command, detector_env['env'])
    results = _results(work)
    # the sweep's seed-0 run at the chosen lr is that seed's run
    assert (results['trained'], results['cached']) == (2 * (2 + 1), 0)
    shares = [
        float(line.split('] ')[1].split(' %')[0])
        for line in log.splitlines()
        if line.startswith('[') and ' % | elapsed' in line
    ]
    assert len(shares) == 6 and shares[-1] == 100.0
    for arm in ('full-ft', 'qnv2-u-lr'):
        out = results['arms'][arm]
        assert set(out['sweep']) == {'0.0001', '0.001'}
        assert out['lr'] == max((1e-4, 1e-3), key=lambda lr: out['sweep'][f'{lr:g}'])
        assert out['runs'][0]['val']['accuracy/top1'] == out['sweep'][f'{out["lr"]:g}']
    report = (work / 'report.md').read_text()
    assert 'test `accuracy/top1`' in report and '## lr sweep' in report


@pytest.mark.slow
def test_one_arm_under_torchrun_matches_one_process(tmp_path, detector_env):
    """2 processes of batch 4 (DDP averages their gradients) against one of
    batch 8: the same 8 images per step, in the same order (no random flip,
    BN statistics frozen), so the same model, scored on the same test split."""
    same = [
        'train_dataloader.dataset.pipeline.2.prob=0.0',
        'model.backbone.backbone.norm_eval=True',
    ]
    metrics = {}
    for launcher, nproc, batch in (('none', 1, 8), ('pytorch', 2, 4)):
        work = tmp_path / launcher
        run_tool(
            [
                sys.executable,
                TOOL,
                DEMO_CLASSIFIER,
                '--arms',
                'qnv2-adapters',
                '--seeds',
                '0',
                '--launcher',
                launcher,
                '--nproc',
                str(nproc),
                '--port',
                '29641',
                '--work-dir',
                str(work),
                '--cfg-options',
                *_classifier_env(detector_env, batch),
                *same,
            ],
            detector_env['env'],
        )
        (run,) = _results(work)['arms']['qnv2-adapters']['runs']
        assert run['world_size'] == nproc
        metrics[launcher] = dict(val=run['val'], test=run['test'])
    # the tolerance of tests/test_e2e.py's 2-process test: equal metrics
    torch.testing.assert_close(metrics['pytorch'], metrics['none'])


def test_progress_bar_counts_cached_runs_and_estimates_the_time_left():
    import io

    from quadra_mm.comparison.executor import Progress

    out = io.StringIO()
    progress = Progress(5, workers=2, width=10, stream=out)
    progress.step('a seed 0', reused=True)
    progress.step('a seed 1', seconds=30.0)
    progress.step('b seed 0', seconds=50.0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith('[##........]  20.0 %') and lines[0].endswith('(cached)')
    assert 'left ?' in lines[0]  # nothing trained yet: no rate
    # 2 runs left, 2 at a time, 40 s a run on average
    assert lines[2].startswith('[######....]  60.0 %') and 'left ~0:40' in lines[2]
    progress.step('b seed 1', seconds=40.0)
    progress.step('c seed 0', seconds=40.0)
    assert out.getvalue().splitlines()[-1].split(' | ')[2] == 'left 0:00'
