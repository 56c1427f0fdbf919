"""Part 6, pruning (``--parts pruning``, issue 18): which adapters of a trained
QNv2 model can be switched off, and what that costs in accuracy.

Per seed, the trained model of a protocol (task (b)'s adapters-only arm; the
demo detector of part 4) is scored once on its val set by
``quadra_mm.importance``'s :func:`score_adapters` (the
exact ablation scorer, which measures the norm ratio in the same pass), and
its adapters are ordered least important per FLOP first by three scorers:
the ablation drop, the branch-to-primary norm ratio, and a seeded random
order. Each order switches off 0 / 25 / 50 / 75 / 100 % of the adapters
(:func:`prune_fraction`) and, separately, as many as the FLOPs budget
``BUDGET`` needs (:func:`prune_to_flops`); every pruned model is scored once on
the protocol's test set, which the scorers never saw. The FLOPs ratio of a
pruned set is ``(F_0 + sum of the kept f_i) / F_0``, as the tool counts it.

Pruned in training (task (b) only, where pruning after training lost the
most): the adapters-only recipe again, at the lr its arm chose, with
``AdapterPruningHook`` switching off the ablation order's 25 / 50 / 75 % (and
the budget's share) at half the iterations; the rest of the model trains on
for the other half, and the final model is scored on the test set.
"""

import copy
import os.path as osp
import random
from typing import Dict, List, Sequence, Tuple

from mmengine.config import Config

from quadra_mm.adapters import quadratic_layers
from quadra_mm.adapters.pruning import prune_fraction, prune_to_flops, switched_off
from quadra_mm.cli import build_runner
from quadra_mm.importance import (
    Evaluation,
    least_important_first,
    metric_of,
    ranking,
    score_adapters,
)
from quadra_mm.models import load_trained_checkpoint

from .configs import quiet

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
BUDGET = 1.02  # the forward FLOPs budget, x the first-order model
SCORERS = ('ablation', 'norm', 'random')


def setting_name(fraction: float) -> str:
    return f'{100 * fraction:.0f} %'


BUDGET_SETTING = f'<= {BUDGET}x FLOPs'
# Pruned in training: per setting, its AdapterPruningHook rule and run dir.
IN_TRAINING = {
    **{
        setting_name(f): (dict(prune_fraction=f), f'fraction{100 * f:.0f}')
        for f in (0.25, 0.5, 0.75)
    },
    BUDGET_SETTING: (dict(prune_to_flops=BUDGET), f'flops{BUDGET}'),
}
IN_TRAINING_SCORER = 'ablation'  # the order that lost least after training


def prune_in_training(cfg: Config, setting: str, prune_iter: int) -> None:
    """``cfg`` (task (b)'s adapters-only recipe) with ``setting``'s pruning
    before iteration ``prune_iter``."""
    rule, _ = IN_TRAINING[setting]
    cfg.custom_hooks.append(
        dict(type='AdapterPruningHook', prune_iter=prune_iter, scorer=IN_TRAINING_SCORER, **rule)
    )


def orders(rows: Sequence[dict], seed: int) -> Dict[str, List[str]]:
    """Per scorer, every adapter name, the first to switch off first.

    ``rows`` are :func:`score_adapters`' (ranked by the ablation per FLOP);
    the norm order ranks the same rows by the norm ratio per FLOP, the
    random one shuffles the names with ``seed``."""
    by_norm = ranking([dict(row, importance=row['norm_ratio']) for row in rows])
    shuffled = sorted(row['adapter'] for row in rows)
    random.Random(seed).shuffle(shuffled)
    by_drop = ranking([dict(row) for row in rows])
    return dict(
        ablation=least_important_first(by_drop),
        norm=least_important_first(by_norm),
        random=shuffled,
    )


def pruned_sets(
    rows: Sequence[dict], first_order_flops: int, seed: int
) -> Dict[str, Dict[str, List[str]]]:
    """Per scorer, per setting (a fraction of the adapters, or the FLOPs
    budget), the adapters switched off."""
    flops = {row['adapter']: row['flops'] for row in rows}
    sets = {}
    for scorer, order in orders(rows, seed).items():
        sets[scorer] = {setting_name(f): prune_fraction(order, f) for f in FRACTIONS}
        sets[scorer][BUDGET_SETTING] = prune_to_flops(order, flops, first_order_flops, BUDGET)
    return sets


def prune_and_test(
    cfg: Config, checkpoint: str, metric: str, reported: Tuple[str, ...], seed: int
) -> dict:
    """Score the adapters of ``checkpoint`` on ``cfg``'s val set by
    ``metric``, then every pruned set of :func:`pruned_sets` on its test set
    (``reported`` metrics; each distinct set scored once). Runs in a worker."""
    runner = build_runner(cfg)
    model = runner.model
    load_trained_checkpoint(model, checkpoint)
    layers = dict(quadratic_layers(model))
    scores = score_adapters(Evaluation(runner.val_loop, model), layers, 'ablation', metric)
    test = Evaluation(runner.test_loop, model)
    f0 = scores.first_order_flops
    tested: Dict[Tuple[str, ...], Dict[str, float]] = {}
    settings: Dict[str, Dict[str, dict]] = {}
    for scorer, chosen in pruned_sets(scores.rows, f0, seed).items():
        for setting, names in chosen.items():
            key = tuple(sorted(names))
            if key not in tested:
                with switched_off(layers[name] for name in names):
                    metrics = test.run()
                tested[key] = {
                    m: metric_of(metrics, m, f'{len(names)} adapters off') for m in reported
                }
            settings.setdefault(scorer, {})[setting] = dict(
                pruned=len(names),
                flops_ratio=scores.flops_ratio(names),
                test=tested[key],
                adapters=list(names),
            )
    keep = ('adapter', 'stage', 'flops', 'flop_share_pct', 'norm_ratio', 'metric_drop')
    return dict(
        seed=seed,
        metric=metric,
        val_metric=scores.val_metric,
        first_order_flops=f0,
        adapted_flops=scores.adapted_flops,
        adapters=[{k: row[k] for k in keep} for row in scores.rows],
        settings=settings,
        test_passes=len(tested),
    )


def pruning_cfg(cfg: Config, work_dir: str) -> Config:
    """``cfg`` (a trained run's) to score and test in ``work_dir``: nothing
    loaded by the runner (the tool's loader takes the checkpoint)."""
    cfg = copy.deepcopy(cfg)
    cfg.load_from, cfg.resume = None, False
    quiet(cfg, work_dir)
    return cfg


def result_path(work_dir: str) -> str:
    return osp.join(work_dir, 'study_pruning.json')
