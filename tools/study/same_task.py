"""The same-task part (``--parts same-task``): the paper's own experiment.

A first-order network is pretrained on all ten Fashion-MNIST classes for P
steps, then every arm (:data:`SAME_TASK_ARMS`) starts from that checkpoint
and trains E more steps on the same task: first-order training continued
(the control with the same extra compute), QNv2 stage training, QNv2
adapters only, LoRA adapters only. For the cost axis, the same quadratic
network from random init trains P + ``scratch_extras`` x E steps, its val
curve recorded, at the pretraining's recipe and lr.
"""

import os.path as osp
from typing import Callable, Dict, List, Tuple

from mmengine.config import Config

from quadra_mm.comparison.executor import concurrently

from .arms import ARM_BY_NAME, Arm, train_everything
from .configs import load, quiet, set_datasets, set_schedule
from .results import summary
from .scale import STUDY, Scale

__all__ = ['SAME_TASK_ARMS', 'SCRATCH', 'same_task_cfg', 'same_task_units', 'run_same_task']

SAME_TASK_ARMS = (
    Arm(
        'first-order-continued',
        'first-order',
        True,
        'the pretrained first-order network trains E more steps, every '
        'parameter (the control: the same extra compute)',
        train_everything,
    ),
    ARM_BY_NAME['qnv2-stages'],
    ARM_BY_NAME['qnv2-adapters'],
    ARM_BY_NAME['lora'],
)
SCRATCH = ARM_BY_NAME['quadranet-scratch']
PRETRAIN = Arm(
    'pretrain',
    'first-order',
    False,
    'the first-order network from random init, P steps',
    train_everything,
)


def same_task_cfg(
    arm: Arm,
    scale: Scale,
    data: str,
    seed: int,
    lr: float,
    iters: int,
    val_interval: int,
    work_dir: str,
    pretrained: str = '',
) -> Config:
    """The config of one same-task run: ``arm`` for ``iters`` steps at
    ``lr``, started from ``pretrained`` (backbone and head) if the arm is a
    pretrained one. The pretraining and from-scratch runs warm up for 20
    steps as the source models do, the E-step arms for 10."""
    s = scale.same_task
    prefix = 'qnv2-' if arm.family == 'qnv2' else ''
    cfg = load(osp.join(STUDY, f'{prefix}resnet18-w32-cifar_fmnist-10cls.py'))
    set_datasets(cfg, data, scale, seed, 'source', s.train_per_class)
    cfg.train_dataloader.batch_size = s.batch
    cfg.test_dataloader.dataset.per_class = s.test_per_class
    set_schedule(cfg, iters, val_interval, warmup=10 if arm.pretrained else 20)
    cfg.optim_wrapper.optimizer.lr = lr
    if arm.pretrained:
        cfg.model.backbone.init_cfg = dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.'
        )
        cfg.model.head.init_cfg = dict(type='Pretrained', checkpoint=pretrained, prefix='head.')
    arm.configure(cfg, iters)
    quiet(cfg, work_dir)
    return cfg


def same_task_test_len(scale: Scale) -> int:
    return 10 * (scale.same_task.test_per_class or 1000)


def same_task_units(scale: Scale, test_units: float) -> float:
    """Progress units (training iterations) of the part; ``test_units``: a
    test pass of the 5-class tasks, the 10-class test file is twice it."""
    s, seeds = scale.same_task, len(scale.seeds)
    arms = len(SAME_TASK_ARMS)
    return (
        seeds * (2 * s.pretrain_iters + s.scratch_extras * s.extra_iters)
        + arms * (len(s.lrs) + seeds - 1) * s.extra_iters
        + seeds * (arms + 2) * 2 * test_units
    )


def run_same_task(study) -> dict:
    """Run the part with ``study``'s pool (a :class:`~.runner.Study`): the
    pretraining and from-scratch runs of every seed, then each arm's lr sweep
    on the first seed and its other seeds at the chosen lr, every run tested
    once. Returns the part's results."""
    scale, s = study.scale, study.scale.same_task
    work = osp.join(study.work, 'same-task')
    pretrain_lr = load(
        osp.join(STUDY, 'resnet18-w32-cifar_fmnist-10cls.py')
    ).optim_wrapper.optimizer.lr
    scratch_iters = s.pretrain_iters + s.scratch_extras * s.extra_iters

    def trained_and_tested(label: str, cfg: Config, units: float) -> dict:
        result = study.train_run(cfg, 'accuracy/top1')
        result['test'] = study.test_run(cfg, result['checkpoint'], same_task_test_len(scale))
        study.step(
            units,
            f'same-task / {label}: val {result["final"]:.1f} test {result["test"]:.1f}',
            result['seconds'],
            result['reused'],
        )
        return result

    def pretrain(seed: int) -> dict:
        cfg = same_task_cfg(
            PRETRAIN,
            scale,
            study.data,
            seed,
            pretrain_lr,
            s.pretrain_iters,
            s.pretrain_val_interval,
            osp.join(work, 'pretrain', f'seed{seed}'),
        )
        return trained_and_tested(f'pretrain seed {seed}', cfg, s.pretrain_iters)

    def scratch(seed: int) -> dict:
        cfg = same_task_cfg(
            SCRATCH,
            scale,
            study.data,
            seed,
            pretrain_lr,
            scratch_iters,
            s.scratch_val_interval,
            osp.join(work, 'scratch', f'seed{seed}'),
        )
        return dict(
            summary(trained_and_tested(f'QuadraNet from scratch seed {seed}', cfg, scratch_iters)),
            seed=seed,
        )

    def pretrain_then_arms() -> Tuple[Dict[int, dict], Dict[str, dict]]:
        pretrained = dict(zip(scale.seeds, concurrently(pretrain, scale.seeds)))

        def arm(one: Arm) -> dict:
            def make_cfg(seed: int, lr: float) -> Config:
                return same_task_cfg(
                    one,
                    scale,
                    study.data,
                    seed,
                    lr,
                    s.extra_iters,
                    s.val_interval,
                    osp.join(work, one.name, f'lr{lr:g}_seed{seed}'),
                    pretrained=pretrained[seed]['checkpoint'],
                )

            return study.swept(
                f'same-task / {one.name}',
                one.describe,
                s.lrs,
                s.extra_iters,
                make_cfg,
                same_task_test_len(scale),
            )

        arms = dict(zip((a.name for a in SAME_TASK_ARMS), concurrently(arm, SAME_TASK_ARMS)))
        return pretrained, arms

    branches: List[Callable] = [pretrain_then_arms, lambda: concurrently(scratch, scale.seeds)]
    (pretrained, arms), scratch_runs = concurrently(lambda f: f(), branches)
    return dict(
        pretrain_lr=pretrain_lr,
        pretrain=[dict(summary(pretrained[seed]), seed=seed) for seed in scale.seeds],
        arms=arms,
        scratch=dict(
            describe=SCRATCH.describe, lr=pretrain_lr, iters=scratch_iters, runs=scratch_runs
        ),
    )
