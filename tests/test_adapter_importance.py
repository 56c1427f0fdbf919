"""tools/analysis_tools/adapter_importance.py and AdapterPruningHook (issue
18): both scorers rank first the one adapter that matters on a tiny
classifier; the pruned checkpoint loads strictly, exports, and costs the
first-order FLOPs plus exactly the adapters it keeps; bad input stops before
anything is written; the tool end to end on the demo detector; the hook
prunes in a real training run, keeps the pruned adapters off and frozen to
the end, and a resumed run repeats the uninterrupted one."""

import csv
import importlib.util
import json
import math
import os.path as osp
import re
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import quadra_mm  # noqa: F401
from quadra_mm.adapters import quadratic_layers
from quadra_mm.deploy import export_for_inference
from quadra_mm.models import load_trained_checkpoint

from helpers import DEMO_DETECTOR, ROOT, detector_run_env, run_tool

TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'adapter_importance.py')
NUM_CLASSES, NUM_IMAGES, SIZE = 4, 32, 32
# The adapter made to matter: a stage-3 one, neither first nor last in
# module order, and not the cheapest.
IMPORTANT = 'backbone.layer3.0.conv2'


def _tool():
    spec = importlib.util.spec_from_file_location('adapter_importance', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _classifier(adapted: bool = True) -> dict:
    backbone = dict(
        type='ResNet', depth=18, stem_channels=8, base_channels=8, zero_init_residual=False
    )  # else conv2's output is zeroed
    if adapted:
        backbone = dict(
            type='QuadraNetV2',
            backbone=backbone,
            targets='resnet',
            adapter=dict(rank=4, kernel_size=3, dilation=2),
        )
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64),
        data_preprocessor=dict(num_classes=NUM_CLASSES, mean=[127.5] * 3, std=[64.0] * 3),
    )


def _config(data_root: str) -> dict:
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    return dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['quadra_mm'], allow_failed_imports=False),
        model=_classifier(),
        val_dataloader=dict(
            batch_size=8,
            num_workers=0,
            dataset=dict(
                type='CustomDataset',
                data_root=data_root,
                ann_file='val.txt',
                data_prefix='images',
                metainfo=dict(classes=[f'c{i}' for i in range(NUM_CLASSES)]),
                pipeline=pipeline,
            ),
            sampler=dict(type='DefaultSampler', shuffle=False),
        ),
        val_evaluator=dict(type='Accuracy', topk=(1,)),
        val_cfg=dict(),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1000)),
        log_level='WARNING',
    )


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A classifier whose adapters are all tiny except ``IMPORTANT``'s, and
    val images labelled with its predictions: that adapter off costs
    accuracy, the others (almost) nothing."""
    root = tmp_path_factory.mktemp('importance')
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(_classifier())
    model.init_weights()
    layers = dict(quadratic_layers(model))
    with torch.no_grad():
        for name, layer in layers.items():
            layer.quad_u.weight.normal_(std=100.0 if name == IMPORTANT else 1e-5)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(NUM_IMAGES)]
    (root / 'images').mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(root / 'images' / f'{i}.png'), image)
    # As LoadImageFromFile + PackInputs give them: BGR, CHW uint8.
    batch = dict(inputs=[torch.from_numpy(im.transpose(2, 0, 1).copy()) for im in images])
    model.eval()
    important = layers[IMPORTANT].quad_u.weight
    with torch.no_grad():
        labels = [int(s.pred_label) for s in model.val_step(batch)]
        saved = important.clone()
        important.zero_()
        without = [int(s.pred_label) for s in model.val_step(batch)]
        important.copy_(saved)
    # The fixture is only a test if the adapter changes predictions.
    assert sum(a != b for a, b in zip(labels, without)) >= 4, (labels, without)
    for split in ('train', 'val'):  # AdapterPruningHook's runs train on them
        (root / f'{split}.txt').write_text(
            ''.join(f'{i}.png {label}\n' for i, label in enumerate(labels))
        )
    checkpoint = str(root / 'trained.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), checkpoint)
    config = str(root / 'tiny_classifier.py')
    Config(_config(str(root))).dump(config)
    return dict(root=root, config=config, checkpoint=checkpoint)


def _rows(out_dir):
    with open(osp.join(out_dir, 'adapter_importance.csv')) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('scorer', ['ablation', 'norm'])
def test_scorer_ranks_the_adapter_that_matters_first(tiny, scorer, tmp_path):
    out = tmp_path / 'out'
    summary = _tool().main(
        [
            tiny['config'],
            tiny['checkpoint'],
            '--work-dir',
            str(tmp_path / 'work'),
            '--out-dir',
            str(out),
            '--scorer',
            scorer,
        ]
    )
    assert summary['val_metric'] == 100.0  # labels are its own predictions
    rows = _rows(out)
    assert len(rows) == 8 and rows[0]['rank'] == '1'
    assert rows[0]['adapter'] == IMPORTANT, rows
    assert {r['stage'] for r in rows} == {'0', '1', '2', '3'}
    if scorer == 'ablation':
        assert float(rows[0]['metric_drop']) >= 100 * 4 / NUM_IMAGES
        assert all(abs(float(r['metric_drop'])) < 1e-6 for r in rows[1:])
    else:
        assert rows[0]['metric_drop'] == ''
    shares = [float(r['flop_share_pct']) for r in rows]
    assert all(s > 0 for s in shares)
    # The adapters' shares add up to the adapted model's FLOPs over F_0.
    ratio = summary['adapted_flops'] / summary['first_order_flops']
    assert abs(sum(shares) / 100 - (1 - 1 / ratio)) < 1e-9
    for name in ('adapter_importance.md', 'adapter_importance.png', 'adapter_importance.json'):
        assert (out / name).stat().st_size > 0
    assert IMPORTANT in (out / 'adapter_importance.md').read_text()
    assert not list(out.glob('*.pth'))  # no pruning asked for


def _flops(module, size=SIZE):
    """mmengine's count (get_flops.py's) of ``module`` on one image."""
    return get_model_complexity_info(
        module, inputs=(torch.randn(1, 3, size, size),), show_table=False, show_arch=False
    )['flops']


@pytest.mark.parametrize('prune', [['--prune-fraction', '0.5'], ['--prune-to-flops', '1.12']])
def test_pruned_checkpoint_loads_exports_and_counts_the_adapters_left(tiny, prune, tmp_path):
    out = tmp_path / 'out'
    summary = _tool().main(
        [
            tiny['config'],
            tiny['checkpoint'],
            '--work-dir',
            str(tmp_path / 'work'),
            '--out-dir',
            str(out),
            '--scorer',
            'norm',
            *prune,
        ]
    )
    pruned = summary['pruned']
    rows = {r['adapter']: r for r in _rows(out)}
    names = set(pruned['adapters'])
    assert names == {n for n, r in rows.items() if r['pruned'] == 'True'}
    assert IMPORTANT not in names and names
    if prune[0] == '--prune-fraction':
        assert len(names) == 4
    else:
        assert pruned['flops_ratio'] <= 1.12
        # Minimal: the last adapter switched off was needed for the budget.
        last = min(names, key=lambda n: int(rows[n]['rank']))
        assert (pruned['flops'] + int(rows[last]['flops'])) / summary['first_order_flops'] > 1.12
    assert not list(out.glob('.*.tmp'))  # atomic write left no temp file

    # Strictly into the training config's model.
    cfg = Config.fromfile(tiny['config'])
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    load_trained_checkpoint(model, pruned['checkpoint'])
    original = torch.load(tiny['checkpoint'])['state_dict']
    for name, layer in quadratic_layers(model):
        u = layer.quad_u.weight
        if name in names:
            assert not u.any(), name
        else:
            assert torch.equal(u, original[f'{name}.quad_u.weight']), name
    assert torch.load(pruned['checkpoint'])['meta']['pruned_adapters'] == pruned['adapters']

    # Exported, its mmengine FLOPs are the first-order model's plus exactly
    # the adapters left.
    model.eval()
    exported = export_for_inference(model, drop_zero_adapters=True)
    assert {n for n, _ in quadratic_layers(exported)} == set(rows) - names
    first_order = MODELS.build(_classifier(adapted=False))
    first_order.eval()
    kept = sum(int(r['flops']) for n, r in rows.items() if n not in names)
    assert _flops(exported.backbone) == _flops(first_order.backbone) + kept
    # The tool's own count of the pruned model (whole classifier) agrees.
    assert pruned['flops'] == summary['first_order_flops'] + kept


def test_bad_input_is_named_and_nothing_written(tiny, tmp_path, capsys):
    tool = _tool()
    work, out = tmp_path / 'work', tmp_path / 'out'
    base = ['--work-dir', str(work), '--out-dir', str(out)]

    init_default_scope('mmpretrain')
    first_order = str(tmp_path / 'first_order.pth')
    torch.save(dict(state_dict=MODELS.build(_classifier(False)).state_dict()), first_order)
    with pytest.raises(SystemExit, match='no quadratic adapter keys'):
        tool.main([tiny['config'], first_order, *base])

    for flag, value, words in (
        ('--prune-to-flops', '0.99', 'must be >= 1.0'),
        ('--prune-fraction', '1.5', 'in [0, 1]'),
        ('--prune-fraction', '-0.1', 'in [0, 1]'),
    ):
        with pytest.raises(SystemExit):
            tool.main([tiny['config'], tiny['checkpoint'], *base, flag, value])
        err = capsys.readouterr().err
        assert flag in err and words in err, err

    cfg = Config.fromfile(tiny['config'])
    for key in ('val_evaluator', 'val_dataloader'):
        broken = Config({k: v for k, v in cfg.to_dict().items() if k != key})
        path = str(tmp_path / f'no_{key}.py')
        broken.dump(path)
        with pytest.raises(SystemExit, match=f'no {key} in the config'):
            tool.main([path, tiny['checkpoint'], *base])
    assert not work.exists() and not out.exists()


# -- the demo detector, end to end ------------------------------------------

IMG, ITERS, VAL_IMAGES = 96, 4, 4


@pytest.mark.slow
def test_demo_detector_end_to_end(tmp_path):
    env = detector_run_env(tmp_path, img=IMG, num_train=8, num_val=VAL_IMAGES)
    schedule = [
        f'train_cfg.max_iters={ITERS}',
        'train_cfg.val_interval=1000',
        f'default_hooks.checkpoint.interval={ITERS}',
        'custom_hooks.0.switch_iter=2',
        'param_scheduler.0.end=1',
        'param_scheduler.1.begin=1',
        f'param_scheduler.1.end={ITERS}',
        'train_dataloader.batch_size=2',
        'optim_wrapper.optimizer.lr=1e-2',
        'model.test_cfg.rcnn.score_thr=0.0',
    ]
    options = [*env['options'], *schedule]
    work = tmp_path / 'train'
    run_tool(
        [
            sys.executable,
            'tools/train.py',
            DEMO_DETECTOR,
            '--work-dir',
            str(work),
            '--cfg-options',
            *options,
        ],
        env['env'],
    )
    checkpoint = work / f'iter_{ITERS}.pth'
    out = tmp_path / 'importance'
    log = run_tool(
        [
            sys.executable,
            TOOL,
            DEMO_DETECTOR,
            str(checkpoint),
            '--work-dir',
            str(tmp_path / 'work'),
            '--out-dir',
            str(out),
            '--prune-to-flops',
            '1.004',
            '--cfg-options',
            *options,
            f'val_dataloader.dataset.indices={VAL_IMAGES}',
        ],
        env['env'],
    )
    assert 'adapters scored (ablation)' in log, log[-3000:]
    summary = json.loads((out / 'adapter_importance.json').read_text())
    assert summary['metric'] == 'coco/bbox_mAP'
    assert summary['val_images'] == VAL_IMAGES
    rows = summary['adapters']
    assert len(rows) == 8 and {r['stage'] for r in rows} == {0, 1, 2, 3}
    assert all(r['metric_drop'] is not None and r['flops'] > 0 for r in rows)
    pruned = summary['pruned']
    assert pruned['flops_ratio'] <= 1.004 < summary['flops_ratio']
    assert 0 < len(pruned['adapters']) < len(rows)

    # The pruned checkpoint loads strictly into the training config; its
    # exported form skips the pruned branches, and its backbone costs the
    # first-order ResNet-18's FLOPs plus exactly the adapters left.
    cfg = Config.fromfile(DEMO_DETECTOR)
    cfg.merge_from_dict(dict(o.split('=', 1) for o in options if o.startswith('model.')))
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    load_trained_checkpoint(model, pruned['checkpoint'])
    exported = export_for_inference(model)
    skipped = {n for n, layer in quadratic_layers(exported) if layer.quadratic_term_is_zero}
    assert skipped == set(pruned['adapters'])
    first_order = MODELS.build(cfg.model.backbone.backbone)
    first_order.eval()
    kept = sum(r['flops'] for r in rows if not r['pruned'])
    assert _flops(exported.backbone, IMG) == _flops(first_order, IMG) + kept


# -- AdapterPruningHook: prune during training, train on ----------------------

PRUNE_ITER, TRAIN_ITERS = 3, 6


def _training_runner(
    tiny, work_dir, max_iters, resume=False, without_val=False, epochs=None, **hook
):
    from mmengine.runner import Runner

    cfg = Config.fromfile(tiny['config'])
    train = dict(cfg.val_dataloader, sampler=dict(type='DefaultSampler', shuffle=True))
    train['dataset'] = dict(train['dataset'], ann_file='train.txt')
    cfg.merge_from_dict(
        dict(
            # resuming: the latest checkpoint of work_dir, not the trained one
            work_dir=str(work_dir),
            load_from=None if resume else tiny['checkpoint'],
            resume=resume,
            randomness=dict(seed=0),
            train_dataloader=train,
            train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=1000),
            # Weight decay: a frozen pruned adapter would move if the optimizer saw it.
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False)),
            custom_hooks=[
                dict(
                    type='AdapterPruningHook',
                    prune_fraction=0.5,
                    **({} if 'prune_epoch' in hook else dict(prune_iter=PRUNE_ITER)),
                    **hook,
                )
            ],
        )
    )
    if epochs is not None:
        cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1000)
    if without_val:
        cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    return Runner.from_cfg(cfg)


def _state(path):
    return torch.load(path, weights_only=False)


def _hook(runner):
    from quadra_mm.hooks import AdapterPruningHook

    return next(h for h in runner.hooks if isinstance(h, AdapterPruningHook))


def test_pruning_hook_prunes_at_its_iteration_and_trains_on(tiny, tmp_path):
    work = tmp_path / 'run'
    runner = _training_runner(tiny, work, TRAIN_ITERS)
    runner.train()
    pruned = _hook(runner).pruned
    # The ablation scorer keeps the adapter that matters; half are off.
    assert len(pruned) == 4 and IMPORTANT not in pruned
    summary = json.loads((work / 'adapter_pruning.json').read_text())
    assert summary['iter'] == PRUNE_ITER and summary['pruned'] == pruned
    assert summary['scorer'] == 'ablation' and len(summary['adapters']) == 8
    assert 1.0 < summary['flops_ratio_after'] < summary['flops_ratio_before']

    before = _state(work / f'iter_{PRUNE_ITER}.pth')  # the last one unpruned
    after = _state(work / f'iter_{TRAIN_ITERS}.pth')
    assert 'pruned_adapters' not in before['meta']
    assert after['meta']['pruned_adapters'] == pruned
    for name, _ in quadratic_layers(runner.model):
        keys = [f'{name}.quad_{p}.weight' for p in 'abu']
        if name in pruned:  # off from the pruning on, and never updated
            assert not after['state_dict'][keys[2]].any(), name
            for key in keys[:2]:
                assert torch.equal(after['state_dict'][key], before['state_dict'][key]), key
        else:  # the rest trains on
            assert not torch.equal(after['state_dict'][keys[2]], before['state_dict'][keys[2]]), (
                name
            )
    # The final checkpoint exports without the pruned branches.
    model = MODELS.build(Config.fromfile(tiny['config']).model)
    load_trained_checkpoint(model, str(work / f'iter_{TRAIN_ITERS}.pth'))
    model.eval()
    exported = export_for_inference(model, drop_zero_adapters=True)
    assert {n for n, _ in quadratic_layers(exported)} == {
        n for n, _ in quadratic_layers(model)
    } - set(pruned)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
def test_pruning_hook_under_autocast(tiny, tmp_path, dtype):
    """mmdet's --amp (float16 on CUDA) and bf16: every forward of the training steps and
    of the hook's val passes runs under CPU autocast (mmengine's CPU autocast takes only
    bf16, so the model's forward is wrapped here; the FLOP count traces in fp32, as it
    does under --amp). The adapter made to matter has a branch in the hundreds; the
    scorer still keeps it, every score is finite, and the pruned adapters stay off."""
    runner = _training_runner(tiny, tmp_path, TRAIN_ITERS)
    run_forward = runner.model._run_forward  # what train_step and val_step call

    def run_forward_autocast(data, mode):
        with torch.autocast('cpu', dtype=dtype):
            return run_forward(data, mode)

    runner.model._run_forward = run_forward_autocast
    backbone, dtypes = runner.model.backbone, set()
    # (the FLOP count's exported copy carries a copy of this hook: its fp32 trace is left out)
    backbone.register_forward_hook(
        lambda module, args, out: dtypes.add(out[-1].dtype) if module is backbone else None
    )
    runner.train()
    summary = json.loads((tmp_path / 'adapter_pruning.json').read_text())
    assert dtypes == {dtype}  # only autocast forwards, training and scoring
    assert len(summary['pruned']) == 4 and IMPORTANT not in summary['pruned']
    rows = {r['adapter']: r for r in summary['adapters']}
    assert all(
        math.isfinite(r['norm_ratio']) and math.isfinite(r['metric_drop']) for r in rows.values()
    )
    assert rows[IMPORTANT]['norm_ratio'] > 1  # the branch outweighs L(x)
    final = _state(tmp_path / f'iter_{TRAIN_ITERS}.pth')['state_dict']
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    for name in summary['pruned']:
        assert not final[f'{name}.quad_u.weight'].any(), name


def test_pruning_hook_prunes_at_an_epoch(tiny, tmp_path):
    from mmengine.hooks import Hook

    class TrainingMode(Hook):
        def __init__(self):
            self.modes = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.modes.append(runner.model.training)

    runner = _training_runner(tiny, tmp_path, None, epochs=2, prune_epoch=1, scorer='norm')
    modes = TrainingMode()
    runner.register_hook(modes)
    runner.train()
    summary = json.loads((tmp_path / 'adapter_pruning.json').read_text())
    # 32 images in batches of 8: the first iteration of epoch 1 is iteration 4
    assert (summary['epoch'], summary['iter']) == (1, 4)
    assert len(summary['pruned']) == 4
    # scored in eval mode mid-epoch, then back in training mode for the rest of it
    assert modes.modes == [True] * 8


def test_pruning_hook_resumed_run_repeats_the_uninterrupted_one(tiny, tmp_path):
    whole = tmp_path / 'whole'
    _training_runner(tiny, whole, TRAIN_ITERS, scorer='norm').train()
    split = tmp_path / 'split'
    _training_runner(tiny, split, PRUNE_ITER + 1, scorer='norm').train()
    (split / 'adapter_pruning.json').unlink()
    resumed = _training_runner(tiny, split, TRAIN_ITERS, resume=True, scorer='norm')
    resumed.train()
    pruned = _hook(resumed).pruned
    assert pruned == _state(whole / f'iter_{TRAIN_ITERS}.pth')['meta']['pruned_adapters']
    assert not (split / 'adapter_pruning.json').exists()  # taken from the checkpoint
    layers = dict(quadratic_layers(resumed.model))
    for name in pruned:
        assert not any(p.requires_grad for p in layers[name].adapter_parameters()), name
    expected = _state(whole / f'iter_{TRAIN_ITERS}.pth')['state_dict']
    got = _state(split / f'iter_{TRAIN_ITERS}.pth')['state_dict']
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_pruning_hook_bad_input_is_named(tiny, tmp_path):
    from quadra_mm.hooks import AdapterPruningHook

    for kwargs, words in (
        (dict(prune_fraction=0.5), 'exactly one of `prune_iter`'),
        (dict(prune_iter=-1, prune_fraction=0.5), 'non-negative int'),
        (dict(prune_iter=1), 'exactly one of `prune_to_flops`'),
        (dict(prune_iter=1, prune_to_flops=0.99), 'must be >= 1.0'),
        (dict(prune_iter=1, prune_fraction=1.5), 'must be in [0, 1]'),
        (dict(prune_iter=1, prune_fraction=0.5, scorer='l1'), "'l1' is not one of"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            AdapterPruningHook(**kwargs)

    work = tmp_path / 'no_val'
    runner = _training_runner(tiny, work, TRAIN_ITERS, without_val=True)
    with pytest.raises(ValueError, match='no val_dataloader / val_evaluator'):
        runner.train()
    assert not list(work.glob('*.pth')) and not (work / 'adapter_pruning.json').exists()

    work = tmp_path / 'no_metric'
    runner = _training_runner(tiny, work, TRAIN_ITERS, metric='coco/bbox_mAP')
    with pytest.raises(ValueError, match="`metric`.*no 'coco/bbox_mAP'.*accuracy/top1"):
        runner.train()
    assert not (work / 'adapter_pruning.json').exists()
