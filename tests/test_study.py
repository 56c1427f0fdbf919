"""The adaptation study: its data (real Fashion-MNIST through mmpretrain), its
shift, and ``tools/run_study.py --quick`` end to end (every arm trains, the
report and the plots are written, the numbers are finite)."""

import importlib.util
import json
import math
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS

import quadra_mm.datasets.fashion_mnist  # noqa: F401  (registers the dataset)
from quadra_mm.datasets import apply_shift, prepare_fashion_mnist
from quadra_mm.datasets.fashion_mnist import SOURCE_START, VAL_PER_CLASS
from quadra_mm.datasets.fashion_mnist_files import FILES

from helpers import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
from study.arms import (  # noqa: E402
    ABLATIONS,
    ARMS,
    BUDGET_FACTOR,
    RECIPE_ARMS,
    RECIPE_PAIRS,
)
from study.pruning import (  # noqa: E402
    BUDGET,
    BUDGET_SETTING,
    FRACTIONS,
    IN_TRAINING,
    SCORERS,
    pruned_sets,
    setting_name,
)
from study.report_pruning import within_spread  # noqa: E402
from study.runs import cached  # noqa: E402
from study.same_task import SAME_TASK_ARMS  # noqa: E402
from study.scale import FULL, TASKS  # noqa: E402

DATA = osp.join(ROOT, 'data', 'fashion_mnist')


@pytest.fixture(scope='module')
def data_dir():
    return prepare_fashion_mnist(DATA)


def _build(data_dir, **kwargs):
    init_default_scope('mmpretrain')
    return DATASETS.build(
        dict(
            type='FashionMNISTSubset',
            data_prefix=data_dir,
            pipeline=[dict(type='PackInputs')],
            **kwargs,
        )
    )


def _images(dataset):
    return np.stack([dataset.get_data_info(i)['img'] for i in range(len(dataset))])


def test_splits_are_disjoint_and_sized(data_dir):
    classes = [0, 1, 2, 3, 4]
    parts = {
        part: _build(data_dir, part=part, class_ids=classes) for part in ('val', 'train', 'source')
    }
    assert len(parts['val']) == 5 * VAL_PER_CLASS
    assert len(parts['train']) == 5 * (SOURCE_START - VAL_PER_CLASS)
    assert len(parts['source']) == 5 * (6000 - SOURCE_START)
    seen = set()
    for dataset in parts.values():
        keys = {img.tobytes() for img in _images(dataset)}
        assert not keys & seen, 'an image is in two splits'
        seen |= keys


def test_test_split_reads_the_test_file(data_dir):
    # mmpretrain's FashionMNIST reads the training file unless test_mode=True.
    test = _build(data_dir, part='test', class_ids=list(range(10)))
    assert len(test) == 10000
    raw = np.fromfile(
        osp.join(data_dir, 't10k-images-idx3-ubyte'), dtype=np.uint8, offset=16
    ).reshape(-1, 28, 28)
    np.testing.assert_array_equal(
        _images(test)[:5],
        raw[
            np.argsort(
                np.fromfile(osp.join(data_dir, 't10k-labels-idx1-ubyte'), dtype=np.uint8, offset=8),
                kind='stable',
            )
        ][:5],
    )


def test_subset_relabels_and_seeds(data_dir):
    a = _build(data_dir, part='train', class_ids=[9, 5], per_class=7, seed=1)
    b = _build(data_dir, part='train', class_ids=[9, 5], per_class=7, seed=1)
    c = _build(data_dir, part='train', class_ids=[9, 5], per_class=7, seed=2)
    labels = [int(a.get_data_info(i)['gt_label']) for i in range(len(a))]
    assert labels == [0] * 7 + [1] * 7
    assert a.metainfo['classes'] == ('Ankle boot', 'Sandal') or list(a.metainfo['classes']) == [
        'Ankle boot',
        'Sandal',
    ]
    np.testing.assert_array_equal(_images(a), _images(b))
    assert not np.array_equal(_images(a), _images(c))
    sample = a[0]
    assert tuple(sample['inputs'].shape) == (1, 28, 28)


def test_shift_is_applied_and_nonlinear(data_dir):
    plain = _build(data_dir, part='val', class_ids=[0], per_class=3)
    shifted = _build(data_dir, part='val', class_ids=[0], per_class=3, shift='solarise_swirl')
    np.testing.assert_array_equal(_images(shifted), apply_shift(_images(plain), 'solarise_swirl'))
    # Non-monotonic intensity map: white maps below mid-grey.
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    mapped = apply_shift(np.repeat(ramp, 1, 0), 'solarise_swirl')
    assert mapped.max() == 255 and mapped[0].flat[-1] < 128
    with pytest.raises(ValueError, match='unknown input shift'):
        apply_shift(ramp, 'fog')


def test_missing_data_names_the_files_and_the_fix(tmp_path):
    with pytest.raises(
        FileNotFoundError, match='apt-get install -y dataset-fashion-mnist'
    ) as error:
        prepare_fashion_mnist(str(tmp_path / 'fm'), source=str(tmp_path))
    assert 'train-images-idx3-ubyte' in str(error.value)
    with pytest.raises(FileNotFoundError, match='data_prefix'):
        _build(str(tmp_path), part='val', class_ids=[0])


def test_prepare_is_idempotent(data_dir):
    sizes = {name: osp.getmtime(osp.join(data_dir, name)) for name in FILES}
    prepare_fashion_mnist(data_dir)
    assert sizes == {name: osp.getmtime(osp.join(data_dir, name)) for name in FILES}


def test_run_results_are_reused_only_for_the_same_config(tmp_path):
    from mmengine.config import Config

    calls = []

    def run():
        calls.append(1)
        return dict(top1=float(len(calls)))

    path = str(tmp_path / 'run' / 'study_run.json')
    first = Config(dict(lr=0.1, experiment_name='a', visualizer=dict(name='a')))
    assert cached(path, first, run) == dict(top1=1.0)
    # Only the per-process run names differ: the result is reused.
    again = Config(dict(lr=0.1, experiment_name='b', visualizer=dict(name='b')))
    assert cached(path, again, run) == dict(top1=1.0)
    assert cached(path, Config(dict(lr=0.2)), run) == dict(top1=2.0)
    assert len(calls) == 2


@pytest.mark.slow
def test_quick_study_runs_every_arm(tmp_path, data_dir):
    out = tmp_path / 'docs'
    result = subprocess.run(
        [
            sys.executable,
            'tools/run_study.py',
            '--quick',
            '--out',
            str(out),
            '--work-dir',
            str(tmp_path / 'work'),
            '--data',
            data_dir,
            '--workers',
            '2',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'left ' in result.stdout and '(cached)' not in result.stdout
    with open(out / 'study' / 'results.json') as f:
        results = json.load(f)
    assert set(results['tasks']) == set(TASKS) and results['workers'] == 2
    for task in TASKS:
        assert set(results['tasks'][task]) == {arm.name for arm in ARMS}
        for name, arm in results['tasks'][task].items():
            grown = task == 'shift' and name in results['close_pairs']['4']['extended']
            assert len(arm['runs']) == 2 + grown, (task, name)
            for run in arm['runs']:
                assert math.isfinite(run['test']) and math.isfinite(run['final'])
                assert run['curve'] and run['trainable'] > 0
    arms = results['tasks']['shift']
    # LoRA and QNv2 adapters: same placement, same parameter count.
    assert (
        arms['lora']['runs'][0]['adapter_params']
        == arms['qnv2-adapters']['runs'][0]['adapter_params']
        > 0
    )
    assert arms['linear-probe']['runs'][0]['trainable'] < arms['full-ft']['runs'][0]['trainable']
    # norms-head trains what qnv2-adapters trains but the adapters
    assert (
        arms['norms-head']['runs'][0]['trainable']
        == arms['qnv2-adapters']['runs'][0]['trainable']
        - arms['qnv2-adapters']['runs'][0]['adapter_params']
    )
    # part 3b: the recipes at 4x the iterations, and 2 more seeds exactly
    # for the arms of the pairs that were close at the first 2
    budget = results['budget']
    assert budget['iters'] == BUDGET_FACTOR * results['scale']['iters']
    assert list(budget['arms']) == list(RECIPE_ARMS)
    assert set(results['close_pairs']) == {str(results['scale']['iters']), str(budget['iters'])}
    for iters, by_arm in ((results['scale']['iters'], arms), (budget['iters'], budget['arms'])):
        info = results['close_pairs'][str(iters)]
        grown = {name for pair in info['close'] for name in pair}
        assert set(info['extended']) == grown and info['seeds'] == [2]
        for name in RECIPE_ARMS:
            seeds = [run['seed'] for run in by_arm[name]['runs']]
            assert seeds == ([0, 1, 2] if name in grown else [0, 1]), (iters, name)
            assert all(math.isfinite(run['test']) for run in by_arm[name]['runs'])
        for run in budget['arms']['qnv2-adapters']['runs']:
            assert run['curve'][-1][0] == budget['iters']
    assert set(results['ablation']) == {name for name, *_ in ABLATIONS}
    assert all(math.isfinite(r['test']) for a in results['ablation'].values() for r in a['runs'])
    assert all(r['curve'] for r in results['efficiency']['runs'])
    for name in ('qnv2', 'first-order'):
        runs = results['detection']['arms'][name]
        assert len(runs) == 2
        assert all(math.isfinite(r['bbox_mAP']) and math.isfinite(r['segm_mAP']) for r in runs)
    same = results['same_task']
    assert set(same['arms']) == {arm.name for arm in SAME_TASK_ARMS}
    assert [r['seed'] for r in same['pretrain']] == [0, 1]
    for run in [
        *same['pretrain'],
        *same['scratch']['runs'],
        *(r for arm in same['arms'].values() for r in arm['runs']),
    ]:
        assert math.isfinite(run['test']) and run['curve'], run
    assert same['scratch']['iters'] == 4 + 2 * 2  # P + 2E at the quick scale
    assert (
        same['arms']['lora']['runs'][0]['adapter_params']
        == same['arms']['qnv2-adapters']['runs'][0]['adapter_params']
        > 0
    )
    assert same['arms']['first-order-continued']['runs'][0]['adapter_params'] == 0
    report = (out / 'study.md').read_text()
    assert '## Verdicts' in report and 'nan' not in report.split('## Set-up')[0]
    recipe = report.split('## The recipe and the budget')[1].split('## Adaptation efficiency')[0]
    assert 'nan' not in recipe and recipe.count('| (b) non-linear shift') == 2 * len(RECIPE_PAIRS)
    assert 'the better recipe by the study' in recipe
    same_section = report.split('## Same-task adaptation')[1].split('## Limits')[0]
    assert 'nan' not in same_section and same_section.count('| same task:') == 5
    pruning = results['pruning']
    assert set(pruning) == {'shift', 'detection'}
    for protocol, part in pruning.items():
        assert [run['seed'] for run in part['runs']] == [0, 1]
        for run in part['runs']:
            n = len(run['adapters'])
            assert n == 8 and all(a['metric_drop'] is not None for a in run['adapters'])
            for scorer in SCORERS:
                rows = [run['settings'][scorer][setting_name(f)] for f in FRACTIONS]
                assert [r['pruned'] for r in rows] == [math.ceil(f * n) for f in FRACTIONS]
                ratios = [r['flops_ratio'] for r in rows]
                assert ratios == sorted(ratios, reverse=True), (protocol, scorer)
                assert ratios[0] == pytest.approx(run['adapted_flops'] / run['first_order_flops'])
                assert ratios[-1] == pytest.approx(1.0)
                assert run['settings'][scorer][BUDGET_SETTING]['flops_ratio'] <= BUDGET
                assert all(math.isfinite(v) for r in rows for v in r['test'].values())
            # each distinct pruned set is tested once, and one set is one model
            unpruned = {s: run['settings'][s][setting_name(0.0)]['test'] for s in SCORERS}
            assert len({json.dumps(t, sort_keys=True) for t in unpruned.values()}) == 1
    # Task (b) pruned in training: every setting and seed trained, its
    # pruned set the hook's, its FLOPs those of the same set after training.
    in_training = pruning['shift']['in_training']
    assert in_training['prune_iter'] == in_training['iters'] // 2
    after = {run['seed']: run for run in pruning['shift']['runs']}
    for setting, runs in in_training['settings'].items():
        assert [run['seed'] for run in runs] == [0, 1]
        for run in runs:
            trained = after[run['seed']]
            assert (
                run['pruned']
                == len(run['adapters'])
                == trained['settings']['ablation'][setting]['pruned']
            )
            assert math.isfinite(run['test'])
            # the hook's FLOPs count: the first-order model plus the kept adapters
            f0 = trained['first_order_flops']
            kept = sum(
                a['flops'] for a in trained['adapters'] if a['adapter'] not in run['adapters']
            )
            assert run['flops_ratio'] == pytest.approx((f0 + kept) / f0)
    assert list(in_training['settings']) == list(IN_TRAINING)
    pruning_section = report.split('## Pruning adapters')[1].split('## Limits')[0]
    assert 'nan' not in pruning_section
    assert pruning_section.count('pruning to <= 1.02x') == 2 * len(SCORERS) + 1
    assert 'pruned in training' in pruning_section
    for png in ('shift_examples', 'curves', 'final_accuracy', 'efficiency', 'same_task', 'pruning'):
        with open(out / 'study' / f'{png}.png', 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_pipeline_steps_are_found_by_type_not_position():
    from study.configs import load, pipeline_step
    from study.scale import DEMO

    cfg = load(osp.join(DEMO, 'mask-rcnn_qnv2-r18_fpn_shapes.py'))
    resize = pipeline_step(cfg, 'train_dataloader', 'Resize')
    assert resize.type == 'Resize'
    assert resize is [s for s in cfg.train_dataloader.dataset.pipeline if s.type == 'Resize'][0]
    with pytest.raises(KeyError, match="val_dataloader.*'RandomFlip'"):
        pipeline_step(cfg, 'val_dataloader', 'RandomFlip')


def test_report_renders_the_committed_study_from_its_template():
    """docs/study.md is what the template renders from the committed
    results (what `tools/run_study.py --report-only docs/study/results.json`
    writes); a missing placeholder value is a KeyError naming it."""
    from study.report import render_report
    from study.report_template import template_parts

    with open(osp.join(ROOT, 'docs', 'study', 'results.json')) as f:
        results = json.load(f)
    with open(osp.join(ROOT, 'docs', 'study.md'), encoding='utf-8') as f:
        assert render_report(results) == f.read()
    with pytest.raises(KeyError, match='note'):
        template_parts()['detection_not_run'].substitute()


def test_same_task_adapters_are_low_rank_in_every_layer():
    """The same-task network is wide enough that rank 8 is at most 1/4 of
    the channels of every adapted layer (issue 17), and its adapters sit on
    conv2 of every block, as in the rest of the study."""
    from mmpretrain.registry import MODELS
    from study.configs import load
    from study.scale import STUDY

    from quadra_mm.ops import QuadraticConv2d

    init_default_scope('mmpretrain')
    cfg = load(osp.join(STUDY, 'qnv2-resnet18-w32-cifar_fmnist-10cls.py'))
    assert cfg.model.backbone.backbone.base_channels == FULL.same_task.width
    cfg.model.backbone.init_cfg = None
    backbone = MODELS.build(cfg.model.backbone)
    adapted = {name: m for name, m in backbone.named_modules() if isinstance(m, QuadraticConv2d)}
    assert len(adapted) == 8  # conv2 of the 8 BasicBlocks of a ResNet-18
    for name, layer in adapted.items():
        rank = cfg.model.backbone.adapter.rank
        channels = min(layer.in_channels, layer.out_channels)
        assert 4 * rank <= channels, (name, channels)


def test_merge_keeps_the_earlier_parts_and_adds_the_invocation():
    spec = importlib.util.spec_from_file_location(
        'study_cli', osp.join(ROOT, 'tools', 'run_study.py')
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    earlier = dict(
        scale=dict(name='full'),
        tasks=dict(shift=1, heldout=2),
        detection=dict(arms=3),
        seconds=60.0,
        finished='then',
        workers=2,
    )
    new = dict(
        scale=dict(name='full'),
        tasks={},
        detection={},
        same_task=dict(arms=4),
        seconds=30.0,
        finished='now',
        workers=2,
    )
    merged = cli.merge_results(earlier, dict(new, pruning=dict(shift=5)), ['same-task', 'pruning'])
    assert merged['tasks'] == earlier['tasks'] and merged['detection'] == dict(arms=3)
    assert merged['same_task'] == dict(arms=4) and merged['pruning'] == dict(shift=5)
    assert [run['seconds'] for run in merged['invocations']] == [60.0, 30.0]
    # part 3b: the budget and its close pairs replace the earlier ones;
    # the close pairs of the budget not re-run are kept
    shift_pairs, long_pairs = dict(close=[], extended=[], seeds=[3, 4]), dict(close=[['a', 'b']])
    earlier_3b = dict(earlier, close_pairs={'60': shift_pairs, '240': dict(close=[])})
    merged = cli.merge_results(
        earlier_3b,
        dict(new, budget=dict(iters=240, arms=6), close_pairs={'240': long_pairs}),
        ['budget-4x'],
    )
    assert merged['budget'] == dict(iters=240, arms=6)
    assert merged['close_pairs'] == {'60': shift_pairs, '240': long_pairs}
    with pytest.raises(SystemExit, match='quick run cannot join a full'):
        cli.merge_results(earlier, dict(new, scale=dict(name='quick')), ['same-task'])
    with pytest.raises(SystemExit, match="not 'rbf'"):
        cli.merge_results(earlier, new, ['rbf'])


def _adapter(name: str, flops: int, drop: float, norm: float) -> dict:
    return dict(
        adapter=name,
        stage=0,
        flops=flops,
        flop_share_pct=flops / 10,
        norm_ratio=norm,
        metric_drop=drop,
        importance=drop,
    )


def test_pruned_sets_follow_each_scorer_per_flop_and_the_budget():
    """Part 6's orders: ablation drop and norm ratio, each per FLOP share,
    least important first; random reproducible per seed; the budget takes
    the shortest prefix that meets it."""
    rows = [
        _adapter('a', 10, drop=5.0, norm=0.01),  # matters, small branch
        _adapter('b', 10, drop=0.0, norm=0.50),  # big branch, no effect
        _adapter('c', 40, drop=1.0, norm=0.10),
        _adapter('d', 20, drop=0.1, norm=0.05),
    ]
    sets = pruned_sets(rows, first_order_flops=1000, seed=0)
    assert sets['ablation']['25 %'] == ['b'] and 'a' not in sets['ablation']['75 %']
    assert sets['norm']['25 %'] == ['a'] and 'b' not in sets['norm']['75 %']
    assert all(sorted(sets[s]['100 %']) == ['a', 'b', 'c', 'd'] for s in SCORERS)
    assert all(sets[s]['0 %'] == [] for s in SCORERS)
    assert sets['random'] == pruned_sets(rows, 1000, seed=0)['random']
    assert any(
        pruned_sets(rows, 1000, seed=k)['random']['50 %'] != sets['random']['50 %']
        for k in range(1, 6)
    )
    # 1080 FLOPs adapted: <= 1020 needs 60 off; ablation order b, d, c: b+d = 30 < 60
    assert sets['ablation'][BUDGET_SETTING] == ['b', 'd', 'c']


def test_within_spread_verdict():
    unpruned = [80.0, 82.0, 84.0]  # sigma 2
    assert within_spread([79.9, 81.8, 84.0], unpruned).startswith('**supported**')
    assert within_spread([70.0, 72.1, 73.9], unpruned).startswith('**not supported**')
    assert within_spread([77.0, 81.5, 84.0], unpruned).startswith('**inconclusive')


def _arms(**tests: list) -> dict:
    return {
        name: dict(lr=1e-3, runs=[dict(seed=s, test=t) for s, t in enumerate(v)])
        for name, v in tests.items()
    }


def test_close_pairs_and_the_default_recipe_rule():
    """Part 3b: a recipe pair is close when its paired difference is within
    2 SE of 0; U at the higher lr is the better recipe only if it wins by
    the rule somewhere and the adapters-only recipe is clearly better nowhere."""
    from study.recipe_part import close_pairs
    from study.report_recipe import recipe_section
    from study.report_template import template_parts

    shift = _arms(
        **{
            'full-ft': [80, 81, 82],
            'norms-head': [70, 71, 72],  # far below qnv2-adapters: not close
            'lora': [78.0, 79.1, 80.3],  # within noise of qnv2-adapters: close
            'qnv2-adapters': [78.2, 79.0, 80.0],
            'qnv2-u-lr': [79.2, 80.1, 80.9],  # +1.0, SE 0.03: a clear win
        }
    )
    assert close_pairs(shift) == [('qnv2-adapters', 'lora')]
    results = dict(
        scale=dict(iters=60, seeds=[0, 1, 2], extra_seeds=[3, 4], lrs=[1e-4, 1e-3, 1e-2]),
        tasks=dict(
            shift=shift, heldout=_arms(**{'qnv2-adapters': [90, 90, 91], 'qnv2-u-lr': [90, 91, 90]})
        ),
        budget=dict(
            iters=240, factor=4, arms=dict(shift, **_arms(**{'qnv2-u-lr': [78.2, 79.1, 80.0]}))
        ),
        close_pairs={
            '60': dict(
                close=[['qnv2-adapters', 'lora']], extended=['lora', 'qnv2-adapters'], seeds=[3, 4]
            )
        },
    )
    section = recipe_section(results, template_parts())
    assert '**U at 16× lr is the better recipe' in section
    assert (
        '(*supported*) on (b) at 60 iterations, and the adapters-only recipe is clearly '
        'better on none of (b) at 60 iterations; (b) at 240 iterations; (a) at 60 iterations'
    ) in section
    # the adapters-only recipe clearly better at the longer budget: no default change
    results['budget']['arms'] = dict(shift, **_arms(**{'qnv2-u-lr': [77.2, 78.0, 79.0]}))
    assert '**U at 16× lr is not the better recipe' in recipe_section(results, template_parts())
