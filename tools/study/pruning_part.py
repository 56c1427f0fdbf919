"""Part 6's runs, with a :class:`~.runner.Study`'s pool (what is pruned and
how it is scored is :mod:`.pruning`): the kept runs of a protocol pruned and
tested per seed, and task (b) pruned in training."""

import json
import os.path as osp
import time
from typing import Dict, Tuple

from mmengine.config import Config

from quadra_mm.comparison.cache import fingerprint, load_cached
from quadra_mm.comparison.executor import concurrently

from .arms import ARM_BY_NAME
from .configs import target_cfg
from .pruning import (
    IN_TRAINING,
    IN_TRAINING_SCORER,
    SCORERS,
    prune_in_training,
    pruning_cfg,
    result_path,
)
from .results import summary
from .runs import pruned_and_tested

__all__ = ['run_pruning', 'run_pruned_in_training']


def run_pruning(
    study,
    protocol: str,
    trained: Dict[int, Tuple[Config, str]],
    metric: str,
    reported: Tuple[str, ...],
) -> None:
    """Part 6 (:mod:`.pruning`) on ``trained`` (per seed: the config
    and final checkpoint of a kept run), scored on val by ``metric``."""

    def one(seed: int) -> dict:
        cfg, checkpoint = trained[seed]
        cfg = pruning_cfg(cfg, osp.join(study.work, 'pruning', protocol, f'seed{seed}'))
        cfg.pruned_checkpoint = checkpoint  # in the result's fingerprint
        saved = load_cached(result_path(cfg.work_dir), fingerprint(cfg))
        start = time.time()
        result = (
            saved
            if saved is not None
            else study.pool.submit(
                pruned_and_tested, cfg, checkpoint, metric, reported, seed
            ).result()
        )
        unpruned = result['settings']['ablation']['0 %']['test'][reported[0]]
        study.step(
            study.pruning_units[protocol],
            f'pruning {protocol} seed {seed}: '
            f'{len(result["adapters"])} adapters scored, unpruned '
            f'test {unpruned:.3g}',
            time.time() - start,
            saved is not None,
        )
        return result

    study.results['pruning'][protocol] = dict(
        metric=metric,
        reported=list(reported),
        scorers=list(SCORERS),
        runs=concurrently(one, study.scale.seeds),
    )


def run_pruned_in_training(study, sources: Dict[int, str], lr: float) -> None:
    """Part 6 on task (b), pruned in training (:mod:`.pruning`): the
    adapters-only recipe at ``lr`` (its arm's choice), every setting of
    ``IN_TRAINING`` pruned at half the iterations, trained on, tested."""
    s = study.scale
    base = ARM_BY_NAME['qnv2-adapters']
    prune_iter = s.iters // 2

    def one(item: Tuple[str, int]) -> dict:
        setting, seed = item
        cfg = target_cfg(
            'shift',
            base,
            s,
            study.data,
            seed,
            lr,
            sources[seed],
            osp.join(
                study.work,
                'pruning',
                'shift-in-training',
                IN_TRAINING[setting][1],
                f'seed{seed}',
            ),
        )
        prune_in_training(cfg, setting, prune_iter)
        result = study.train_run(cfg, 'accuracy/top1')
        result['test'] = study.test_run(cfg, result['checkpoint'])
        with open(osp.join(cfg.work_dir, 'adapter_pruning.json')) as f:
            pruning = json.load(f)
        study.step(
            study.in_training_units,
            f'pruned in training, {setting}, seed '
            f'{seed}: {len(pruning["pruned"])} adapters off at iteration '
            f'{prune_iter}, test {result["test"]:.1f}',
            result['seconds'],
            result['reused'],
        )
        return dict(
            summary(result),
            seed=seed,
            pruned=len(pruning['pruned']),
            flops_ratio=pruning['flops_ratio_after'],
            adapters=pruning['pruned'],
        )

    items = [(setting, seed) for setting in IN_TRAINING for seed in s.seeds]
    runs = concurrently(one, items)
    study.results['pruning']['shift']['in_training'] = dict(
        prune_iter=prune_iter,
        iters=s.iters,
        scorer=IN_TRAINING_SCORER,
        lr=lr,
        settings={
            setting: [run for (name, _), run in zip(items, runs) if name == setting]
            for setting in IN_TRAINING
        },
    )
