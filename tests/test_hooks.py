"""QuadraticStageHook and QuadraticStatsHook in real mmengine Runners."""

import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import quadra_mm  # noqa: F401
from quadra_mm.adapters import quadratic_layers
from quadra_mm.hooks import QuadraticStageHook, phase_one_frozen_parameters
from quadra_mm.ops import is_adapter_param_name

from helpers import TINY_CONVNEXT, RecordChanges, convnext_cfg, qnv2_cfg, tiny_training

# mmdet's layer-wise lr decay of its ConvNeXt configs (which ignores
# `paramwise_cfg.custom_keys`), at a tiny ConvNeXt's depth.
LAYER_DECAY = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    # its groups take `weight_decay` from the optimizer (None without it)
    optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.5, decay_type='layer_wise', num_layers=6),
)
# Powers of two: a multiplied lr is exactly the product in floating point, so
# the lrs of the schedulers' steps compare with ==.
U_LR_MULT = 4.0
PRIMARY_LR_MULT = 0.5
# QuadraticStageHook's default u_lr_mult (the recipe the study chose)
DEFAULT_U_LR_MULT = 16.0


class TinyDetector(BaseModel):
    """A QNv2 backbone plus a head: enough for the hooks' view of a model."""

    def __init__(self):
        super().__init__()
        init_default_scope('mmdet')
        self.backbone = MODELS.build(qnv2_cfg(convnext_cfg(out_indices=(3,))))
        self.head = torch.nn.Linear(TINY_CONVNEXT['channels'][-1], 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        feat = self.backbone(inputs)[-1]
        out = self.head(feat.mean((2, 3)))
        if mode == 'loss':
            return dict(loss=((out - targets) ** 2).mean())
        return out


class RecordLrs(RecordChanges):
    """:class:`RecordChanges`, and the lr each parameter's step used."""

    def __init__(self):
        super().__init__()
        self.lrs = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        super().before_train_iter(runner, batch_idx, data_batch)
        self.lrs[runner.iter + 1] = _lr_of(runner)


def _lr_of(runner):
    """Each parameter's lr (by name) in the runner's optimizer."""
    lr = {id(p): g['lr'] for g in runner.optim_wrapper.optimizer.param_groups for p in g['params']}
    return {n: lr[id(p)] for n, p in runner.model.named_parameters() if id(p) in lr}


def _runner(
    work_dir,
    max_iters,
    resume=False,
    switch_iter=2,
    stats=None,
    paramwise_cfg=None,
    compile_cfg=None,
    u_lr_mult=1.0,
    optim_wrapper=None,
    param_scheduler=None,
):
    torch.manual_seed(0)
    recorder = RecordLrs()
    stage = dict(
        type='QuadraticStageHook', switch_iter=switch_iter, primary_lr_mult=PRIMARY_LR_MULT
    )
    if u_lr_mult is not None:  # None: the hook's default
        stage['u_lr_mult'] = u_lr_mult
    hooks = [stage, recorder]
    if stats:
        hooks.append(dict(type='QuadraticStatsHook', interval=stats))
    training = tiny_training(8)
    if paramwise_cfg:
        # A ConfigDict, as `Runner.from_cfg` passes it.
        training['optim_wrapper'] = ConfigDict(
            training['optim_wrapper'], paramwise_cfg=paramwise_cfg
        )
        training['optim_wrapper'].optimizer.weight_decay = 0.05
    if optim_wrapper:
        training['optim_wrapper'] = ConfigDict(training['optim_wrapper'], **optim_wrapper)
    # one logger per run: mmengine keeps one per experiment name
    run = f'{osp.basename(work_dir)}_{max_iters}_{resume}_{switch_iter}_{u_lr_mult}'
    runner = Runner(
        model=TinyDetector(),
        work_dir=str(work_dir),
        **training,
        param_scheduler=param_scheduler or dict(type='CosineAnnealingLR', T_max=8, by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1),
        ),
        custom_hooks=hooks,
        resume=resume,
        default_scope='mmdet',
        cfg=dict(compile=compile_cfg) if compile_cfg else None,
        experiment_name=f'stage_{run}',
    )
    return runner, recorder


def _split(model):
    primary = set(phase_one_frozen_parameters(model, 'backbone'))
    adapters = {n for n, _ in model.named_parameters() if is_adapter_param_name(n)}
    others = {n for n, _ in model.named_parameters()} - primary - adapters
    return primary, adapters, others


def _u_names(model):
    return {
        f'{name}.quad_u.{param}'
        for name, layer in quadratic_layers(model)
        for param, _ in layer.quad_u.named_parameters()
    }


def test_stage_hook_freezes_then_unfreezes_exactly_the_primary_terms(tmp_path):
    runner, recorder = _runner(tmp_path, 4)
    runner.train()
    primary, adapters, others = _split(runner.model)
    assert primary and adapters
    # norms of the backbone and the head train in stage 1
    assert any('backbone' in n and 'norm' in n for n in others)
    assert 'head.weight' in others
    for it in (1, 2):  # stage 1
        assert not recorder.changed[it] & primary
        assert recorder.changed[it] >= adapters | others
    for it in (3, 4):  # stage 2
        assert recorder.changed[it] >= primary | adapters
    # The primary terms live in their own param groups at lr x 0.5.
    groups = runner.optim_wrapper.optimizer.param_groups
    ids = {id(p) for n, p in runner.model.named_parameters() if n in primary}
    primary_groups = [g for g in groups if id(g['params'][0]) in ids]
    other_groups = [g for g in groups if id(g['params'][0]) not in ids]
    assert all(all(id(p) in ids for p in g['params']) for g in primary_groups)
    assert primary_groups[0]['lr'] == pytest.approx(0.5 * other_groups[0]['lr'])


@pytest.mark.parametrize('u_lr_mult', [None, 1.0, U_LR_MULT], ids=['hook-default', '1', '4'])
@pytest.mark.parametrize('optim_wrapper', [None, LAYER_DECAY], ids=['default', 'layer-decay'])
def test_stage_hook_splits_param_groups_by_lr_multiplier(tmp_path, optim_wrapper, u_lr_mult):
    """``before_run`` puts every ``U`` at ``u_lr_mult`` (16 when the config
    does not give it) and every phase-1-frozen parameter at
    ``primary_lr_mult`` times the lr that the optimizer constructor gave its
    group, in groups of their own; every other parameter keeps its group and
    lr. ``u_lr_mult = 1`` leaves ``U`` with ``A`` and ``B``: the split by the
    primary terms alone, as before the option."""
    runner, _ = _runner(tmp_path, 1, u_lr_mult=u_lr_mult, optim_wrapper=optim_wrapper)
    u_mult = DEFAULT_U_LR_MULT if u_lr_mult is None else u_lr_mult
    # what Runner.train does before `before_run`
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    before = [
        ({id(p) for p in g['params']}, g['lr']) for g in runner.optim_wrapper.optimizer.param_groups
    ]
    if optim_wrapper:  # the layer-wise decay's lrs
        assert len({lr for _, lr in before}) > 3
    hook = next(h for h in runner.hooks if isinstance(h, QuadraticStageHook))
    assert hook.u_lr_mult == u_mult
    hook.before_run(runner)
    hook.before_run(runner)  # a second run (runner.train() again) adds nothing

    ids = {n: id(p) for n, p in runner.model.named_parameters()}
    primary, _, _ = _split(runner.model)
    mult = {ids[n]: PRIMARY_LR_MULT for n in primary}
    mult.update({ids[n]: u_mult for n in _u_names(runner.model)})
    expected = set()
    for params, lr in before:
        parts = {}
        for p in params:
            parts.setdefault(mult.get(p, 1.0), set()).add(p)
        expected |= {(frozenset(part), lr * m) for m, part in parts.items()}
    groups = runner.optim_wrapper.optimizer.param_groups
    assert {(frozenset(id(p) for p in g['params']), g['lr']) for g in groups} == expected
    assert all(g['initial_lr'] == g['lr'] for g in groups)
    # the scheduler's values follow its view of the groups: the wrapper's,
    # with `base_param_settings` last when the constructor made several
    (scheduler,) = runner.param_schedulers
    view = runner.optim_wrapper.param_groups
    assert scheduler.base_values == scheduler._last_value == [g['lr'] for g in view]
    assert len(groups) == len(expected)
    # the constructor's groups keep their places (the schedulers index them)
    assert all({id(p) for p in g['params']} <= params for g, (params, _) in zip(groups, before))
    assert all(type(g) is dict for g in groups)


@pytest.mark.parametrize('optim_wrapper', [None, LAYER_DECAY], ids=['default', 'layer-decay'])
def test_u_lr_mult_through_warm_up_and_cosine(tmp_path, optim_wrapper):
    """At every iteration of a LinearLR warm-up and a cosine decay, across the
    phase switch, ``U`` trains at exactly ``u_lr_mult`` times the lr of the
    rest of its constructor's group (its layer's ``A``), and every other
    parameter at the lr it has without the option."""
    schedule = [
        dict(type='LinearLR', start_factor=0.25, by_epoch=False, begin=0, end=3),
        dict(type='CosineAnnealingLR', T_max=4, by_epoch=False, begin=0, end=4),
    ]
    lrs = {}
    for u_lr_mult in (1.0, U_LR_MULT):
        runner, recorder = _runner(
            tmp_path,
            4,
            switch_iter=2,
            u_lr_mult=u_lr_mult,
            optim_wrapper=optim_wrapper,
            param_scheduler=schedule,
        )
        runner.train()
        lrs[u_lr_mult] = recorder.lrs
    u_names = _u_names(runner.model)
    assert u_names and sorted(lrs[U_LR_MULT]) == list(range(1, 5))
    for it, lr in lrs[U_LR_MULT].items():
        without = lrs[1.0][it]
        assert lr == {n: v * (U_LR_MULT if n in u_names else 1.0) for n, v in without.items()}, it
        for name in u_names:
            assert lr[name] == U_LR_MULT * lr[name.replace('.quad_u.', '.quad_a.')], (it, name)
    # the schedule moved the lr (warm-up, cosine)
    some_u = sorted(u_names)[0]
    assert len({lr[some_u] for lr in lrs[U_LR_MULT].values()}) == 4
    (log,) = [h.baseFilename for h in runner.logger.handlers if hasattr(h, 'baseFilename')]
    assert "the adapters' U at lr x4.0" in open(log).read()


def test_phase_switch_changes_the_backward(tmp_path):
    """Every quadratic layer keeps its projections for backward while its primary
    term is frozen (phase 1) and recomputes them once it trains (phase 2)."""
    runner, _ = _runner(tmp_path, 4)
    layers = [layer for _, layer in quadratic_layers(runner.model)]
    choices = []
    handles = [
        layer.register_forward_pre_hook(lambda layer, _: choices.append(layer._keeps_projection()))
        for layer in layers
    ]
    runner.train()
    for handle in handles:
        handle.remove()
    per_iteration = [choices[i : i + len(layers)] for i in range(0, len(choices), len(layers))]
    assert per_iteration == [[True] * len(layers)] * 2 + [[False] * len(layers)] * 2


def test_compiled_train_step_with_paramwise_cfg(tmp_path):
    """``compile = True`` with ``paramwise_cfg``: mmengine's constructor makes
    every param group a ``ConfigDict``, on which dynamo crashed inside
    ``AdamW.step``; the hook leaves plain dicts and the compiled step trains."""
    runner, recorder = _runner(
        tmp_path,
        2,
        switch_iter=1,
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
        compile_cfg=dict(backend='eager'),
    )
    runner.train()
    groups = runner.optim_wrapper.optimizer.param_groups
    assert len(groups) > 2 and all(type(g) is dict for g in groups)
    primary, adapters, _ = _split(runner.model)
    assert not recorder.changed[1] & primary and recorder.changed[1] >= adapters
    assert recorder.changed[2] >= primary | adapters
    norm_groups = [g for g in groups if g['weight_decay'] == 0.0]
    assert norm_groups  # paramwise_cfg still applied


@pytest.mark.parametrize('stop_at', [1, 3])
def test_stage_follows_a_resumed_run_across_the_boundary(tmp_path, stop_at):
    # the schedule of the whole run (a scheduler's `end` defaults to the
    # run's max_iters, and a resumed scheduler keeps the first run's)
    schedule = dict(type='CosineAnnealingLR', T_max=8, by_epoch=False, end=4)
    first, _ = _runner(tmp_path, stop_at, u_lr_mult=U_LR_MULT, param_scheduler=schedule)
    first.train()
    second, recorder = _runner(
        tmp_path, 4, resume=True, u_lr_mult=U_LR_MULT, param_scheduler=schedule
    )
    second.train()
    primary, _, _ = _split(second.model)
    assert sorted(recorder.changed) == list(range(stop_at + 1, 5))
    for it, changed in recorder.changed.items():
        assert bool(changed & primary) == (it >= 3), it
    hook = next(h for h in second.hooks if isinstance(h, QuadraticStageHook))
    assert hook.phase == 2
    # the split param groups resume with the lrs of the run without a break
    straight, straight_recorder = _runner(
        tmp_path / 'straight', 4, u_lr_mult=U_LR_MULT, param_scheduler=schedule
    )
    straight.train()
    assert recorder.lrs == {it: straight_recorder.lrs[it] for it in recorder.lrs}


def test_stage_hook_config_errors():
    with pytest.raises(ValueError, match='exactly one'):
        QuadraticStageHook()
    with pytest.raises(ValueError, match='exactly one'):
        QuadraticStageHook(switch_iter=1, switch_epoch=1)
    with pytest.raises(ValueError, match='primary_lr_mult'):
        QuadraticStageHook(switch_iter=1, primary_lr_mult=-1)
    for u_lr_mult in (0, -2.0):
        with pytest.raises(ValueError, match='`u_lr_mult` must be > 0'):
            QuadraticStageHook(switch_iter=1, u_lr_mult=u_lr_mult)
    model = torch.nn.Module()
    model.backbone = torch.nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match='model.backbone has no quadratic'):
        phase_one_frozen_parameters(model, 'backbone')
    with pytest.raises(ValueError, match='no sub-module `neck`'):
        phase_one_frozen_parameters(model, 'neck')


def test_stats_hook_logs_per_stage_ratios(tmp_path):
    runner, _ = _runner(tmp_path, 4, switch_iter=0, stats=2)
    runner.train()
    scalars = runner.message_hub.log_scalars
    for stage in range(4):
        ratio = scalars[f'train/qnv2_stage{stage}_ratio']
        assert len(ratio.data[0]) == 2  # iterations 2 and 4
        assert ratio.current() > 0  # U trained away from zero
        assert scalars[f'train/qnv2_stage{stage}_ab_norm'].current() > 0
    # the values reach the visualizer backends through the LoggerHook
    import glob
    import json

    logged = glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))
    lines = [json.loads(line) for line in open(logged[-1])]
    assert any('qnv2_stage0_ratio' in line for line in lines)
