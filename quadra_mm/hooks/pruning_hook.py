"""Pruning of the quadratic adapters during training, then training on."""

import json
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from quadra_mm.adapters import quadratic_layers
from quadra_mm.adapters.pruning import switch_off
from quadra_mm.importance import (
    SCORERS,
    Evaluation,
    adapters_to_prune,
    pruning_rule,
    score_adapters,
)
from quadra_mm.ops import QuadraticNeuron
from quadra_mm.registry import register_hook

META_KEY = 'pruned_adapters'


@register_hook
class AdapterPruningHook(Hook):
    """Switch off the least important quadratic adapters at one point of
    training, and train the rest of the model on.

    Before iteration ``prune_iter`` (or the first iteration of epoch
    ``prune_epoch``) every adapter is scored on the val set
    (:mod:`quadra_mm.importance`: the val loop's dataloader and evaluator,
    without its hooks) and the least important per FLOP are switched off
    (``U = 0``) until the forward FLOPs budget ``prune_to_flops`` holds, or
    the ``prune_fraction`` of them. Their ``A``, ``B`` and ``U`` are frozen
    (``requires_grad=False``, gradients dropped): the optimizer skips them, so
    no update and no weight decay moves ``U`` off zero, and the exported model
    (``tools/export.py``, ``drop_zero_adapters=True``) drops them. The rest of
    the model trains on and takes over what the pruned adapters carried: the
    study (``docs/study.md``, part 6) measured what that recovers against
    pruning after training.

    The pruned adapters are logged, written to
    ``<work_dir>/adapter_pruning.json`` (their scores, the FLOPs ratio before
    and after) and kept in every checkpoint's ``meta['pruned_adapters']``: a
    resumed run (or one that loads such a checkpoint) freezes the same
    adapters and does not score again. In training the pruned layers still
    compute their (zero) quadratic term; only the exported model saves their FLOPs.
    Under distributed training every rank scores (the evaluator gathers the
    ranks' results) and rank 0's choice is broadcast, so all ranks prune the
    same adapters; the frozen adapters have no gradients, so the config must
    set ``find_unused_parameters = True``.

    Args:
        prune_iter (int, optional): the iteration (``runner.iter``, 0-based)
            before which to prune.
        prune_epoch (int, optional): the epoch (``runner.epoch``, 0-based) at
            whose first iteration to prune; give exactly one of the two.
        prune_to_flops (float, optional): forward FLOPs budget, a ratio to
            the first-order model's (>= 1.0; 1.0 prunes every adapter).
        prune_fraction (float, optional): the fraction of the adapters to
            prune, in [0, 1]; give exactly one of the two.
        scorer (str): ``'ablation'`` (exact: the val metric drop with one
            adapter off, one val pass per adapter plus one; the default, as
            in ``adapter_importance.py``) or ``'norm'`` (the quadratic-to-primary
            term norm ratio, one val pass).
        metric (str, optional): the val metric to score by; default the
            evaluator's first.
    """

    priority = 'HIGH'  # before QuadraticStatsHook sets up its iteration

    def __init__(
        self,
        prune_iter: Optional[int] = None,
        prune_epoch: Optional[int] = None,
        prune_to_flops: Optional[float] = None,
        prune_fraction: Optional[float] = None,
        scorer: str = 'ablation',
        metric: Optional[str] = None,
    ) -> None:
        if (prune_iter is None) == (prune_epoch is None):
            raise ValueError(
                'AdapterPruningHook: give exactly one of `prune_iter` and `prune_epoch`'
            )
        when = prune_iter if prune_iter is not None else prune_epoch
        if not isinstance(when, int) or isinstance(when, bool) or when < 0:
            raise ValueError(
                'AdapterPruningHook: `prune_iter` / `prune_epoch` must be a '
                f'non-negative int, got {when!r}'
            )
        if (prune_to_flops is None) == (prune_fraction is None):
            raise ValueError(
                'AdapterPruningHook: give exactly one of `prune_to_flops` and `prune_fraction`'
            )
        if prune_to_flops is not None and not prune_to_flops >= 1.0:
            raise ValueError(
                f'AdapterPruningHook: `prune_to_flops` {prune_to_flops} is a '
                'ratio to the first-order FLOPs and must be >= 1.0'
            )
        if prune_fraction is not None and not 0.0 <= prune_fraction <= 1.0:
            raise ValueError(
                f'AdapterPruningHook: `prune_fraction` {prune_fraction} must be in [0, 1]'
            )
        if scorer not in SCORERS:
            raise ValueError(f'AdapterPruningHook: `scorer` {scorer!r} is not one of {SCORERS}')
        self.prune_iter, self.prune_epoch = prune_iter, prune_epoch
        self.prune_to_flops, self.prune_fraction = prune_to_flops, prune_fraction
        self.scorer, self.metric = scorer, metric
        # The pruned adapters' names once pruned (or loaded from a checkpoint).
        self.pruned: Optional[List[str]] = None

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _layers(self, runner) -> Dict[str, QuadraticNeuron]:
        layers = dict(quadratic_layers(self._model(runner)))
        if not layers:
            raise ValueError(
                f'AdapterPruningHook: the model ({type(self._model(runner)).__name__})'
                ' has no quadratic layers; use a QuadraNetV2 backbone'
            )
        return layers

    def before_train(self, runner) -> None:
        layers = self._layers(runner)
        if runner.val_loop is None:
            raise ValueError(
                'AdapterPruningHook: the adapters are scored on the val set, but '
                'the config has no val_dataloader / val_evaluator / val_cfg'
            )
        if is_model_wrapper(runner.model) and not getattr(
            runner.model, 'find_unused_parameters', True
        ):
            raise ValueError(
                'AdapterPruningHook: the pruned adapters get no gradients; set '
                '`find_unused_parameters = True` in the config for distributed '
                'training'
            )
        if self.pruned is not None:  # from a loaded checkpoint
            unknown = sorted(set(self.pruned) - set(layers))
            if unknown:
                raise ValueError(
                    f"AdapterPruningHook: the checkpoint's meta[{META_KEY!r}] "
                    f'names adapters this model lacks: {unknown}'
                )
            self._switch_off_and_freeze(layers, self.pruned)

    def _due(self, runner) -> bool:
        if self.prune_iter is not None:
            return runner.iter >= self.prune_iter
        return runner.epoch >= self.prune_epoch

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.pruned is None and self._due(runner):
            self._prune(runner)

    @staticmethod
    def _switch_off_and_freeze(layers: Dict[str, QuadraticNeuron], names: List[str]) -> None:
        switch_off(layers[name] for name in names)
        for name in names:
            for param in layers[name].adapter_parameters():
                param.requires_grad_(False)
                param.grad = None

    def _prune(self, runner) -> None:
        layers = self._layers(runner)
        model = self._model(runner)
        training = model.training
        try:
            scores = score_adapters(
                Evaluation(runner.val_loop, model), layers, self.scorer, self.metric
            )
        except KeyError as error:  # the evaluator has no such metric
            raise ValueError(f'AdapterPruningHook (`metric`): {error.args[0]}') from None
        finally:
            model.train(training)
        names = adapters_to_prune(scores, self.prune_to_flops, self.prune_fraction)
        chosen = [names]
        broadcast_object_list(chosen)  # in place; rank 0's choice
        names = chosen[0]
        self._switch_off_and_freeze(layers, names)
        self.pruned = list(names)

        f0 = scores.first_order_flops
        rule = pruning_rule(self.prune_to_flops, self.prune_fraction)
        summary = dict(
            iter=runner.iter,
            epoch=runner.epoch,
            rule=rule,
            scorer=self.scorer,
            metric=scores.metric,
            val_metric=scores.val_metric,
            first_order_flops=f0,
            flops_ratio_before=scores.adapted_flops / f0,
            flops_ratio_after=scores.flops_ratio(names),
            pruned=self.pruned,
            adapters=scores.rows,
        )
        if is_main_process():
            path = osp.join(runner.work_dir, 'adapter_pruning.json')
            with open(path + '.partial', 'w') as f:
                json.dump(summary, f, indent=1)
            os.replace(path + '.partial', path)
        runner.logger.info(
            f'AdapterPruningHook: before iteration {runner.iter}, {len(names)} of '
            f'{len(layers)} adapters off ({rule}, {self.scorer} scorer, val '
            f'{scores.metric} {scores.val_metric:.4g} before): forward FLOPs '
            f'{summary["flops_ratio_before"]:.4f}x -> {summary["flops_ratio_after"]:.4f}x '
            f'first-order; pruned {self.pruned}'
        )

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.pruned is not None:
            checkpoint.setdefault('meta', {})[META_KEY] = list(self.pruned)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Called before the weights are loaded; before_train freezes.
        pruned = (checkpoint.get('meta') or {}).get(META_KEY)
        if pruned is not None:
            self.pruned = list(pruned)
