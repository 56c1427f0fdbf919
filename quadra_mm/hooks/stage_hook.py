"""Stage training of quadratic networks (QuadraNet V2, Figure 5)."""
from typing import Dict, List, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import nn

from quadra_mm.adapters import quadratic_layers
from quadra_mm.ops import is_adapter_param_name
from quadra_mm.registry import register_hook

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def primary_parameters(model: nn.Module, module: str) -> Dict[str, nn.Parameter]:
    """The pretrained first-order parameters of ``model.<module>``: all but
    the quadratic adapters and the normalisation layers."""
    target = getattr(model, module, None)
    if not isinstance(target, nn.Module):
        raise ValueError(f'QuadraticStageHook: the model '
                         f'({type(model).__name__}) has no sub-module '
                         f'`{module}` (hook option `module`)')
    if not any(True for _ in quadratic_layers(target)):
        raise ValueError(f'QuadraticStageHook: model.{module} has no '
                         'quadratic layers; use a QuadraNetV2 backbone')
    norm_params = {id(p) for m in target.modules() if isinstance(m, _NORMS)
                   for p in m.parameters(recurse=False)}
    return {f'{module}.{name}': p for name, p in target.named_parameters()
            if not is_adapter_param_name(name) and id(p) not in norm_params}


@register_hook
class QuadraticStageHook(Hook):
    """Two-stage training of a QuadraNet V2 model.

    * Stage 1 (before ``switch_iter`` / ``switch_epoch``): the primary terms
      (the backbone's pretrained parameters, except norms) are frozen; the
      quadratic adapters, norms, neck and heads train.
    * Stage 2: everything trains; the primary terms at ``primary_lr_mult``
      times the learning rate of their parameter group.

    The stage is a function of the runner's iteration (or epoch), so a run
    resumed on either side of the boundary is in the right stage.

    Only parameters that were trainable when the run started are toggled:
    what the backbone froze itself (``frozen_stages``, ``requires_grad=False``
    norms) stays frozen in stage 2. mmdet's ResNet, for one, re-freezes its
    stem and first stages only at the next ``model.train()``, and the optimizer
    holds those parameters: unfreezing them for an iteration (or, with an
    epoch-based loop, for a whole epoch) would update them.

    The learning-rate multiplier is set up once, in ``before_run``, before a
    resumed optimizer state is loaded: each optimizer parameter group that
    holds primary parameters is split in two, the primary part getting
    ``lr * primary_lr_mult``; param schedulers are extended to match.
    Every group the hook leaves is a plain ``dict``: with ``paramwise_cfg``,
    mmengine's optimizer constructors hand the optimizer ``ConfigDict``
    groups, on which dynamo fails in ``AdamW.step`` when the config sets
    ``compile = True``.
    Under DistributedDataParallel, stage 1 leaves parameters without
    gradients, so the config must set ``find_unused_parameters = True``.

    Args:
        switch_iter (int, optional): first iteration of stage 2.
        switch_epoch (int, optional): first epoch of stage 2 (0-based, as
            ``runner.epoch``); give exactly one of the two.
        primary_lr_mult (float): lr multiplier of the primary terms.
        module (str): the sub-module holding the primary terms.
    """

    priority = 'HIGH'

    def __init__(self,
                 switch_iter: Optional[int] = None,
                 switch_epoch: Optional[int] = None,
                 primary_lr_mult: float = 0.1,
                 module: str = 'backbone') -> None:
        if (switch_iter is None) == (switch_epoch is None):
            raise ValueError('QuadraticStageHook: give exactly one of '
                             '`switch_iter` and `switch_epoch`')
        switch = switch_iter if switch_iter is not None else switch_epoch
        if not isinstance(switch, int) or switch < 0:
            raise ValueError('QuadraticStageHook: the switch point must be a '
                             f'non-negative int, got {switch!r}')
        if primary_lr_mult < 0:
            raise ValueError('QuadraticStageHook: `primary_lr_mult` must be '
                             f'>= 0, got {primary_lr_mult}')
        self.switch_iter = switch_iter
        self.switch_epoch = switch_epoch
        self.primary_lr_mult = primary_lr_mult
        self.module = module
        self.stage: Optional[int] = None
        self._primary: Dict[str, nn.Parameter] = {}

    @property
    def primary(self) -> Dict[str, nn.Parameter]:
        """The parameters the stage switch toggles (after ``before_run``)."""
        return dict(self._primary)

    def _model(self, runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def stage_at(self, iteration: int, epoch: int) -> int:
        if self.switch_iter is not None:
            return 2 if iteration >= self.switch_iter else 1
        return 2 if epoch >= self.switch_epoch else 1

    def before_run(self, runner) -> None:
        primary = primary_parameters(self._model(runner), self.module)
        # `self._primary` is kept across runs of one hook: a second run
        # (e.g. after an interrupted `runner.train()`) finds the primary terms
        # frozen by this hook, not by the backbone.
        recorded = {id(p) for p in self._primary.values()}
        self._primary = {name: p for name, p in primary.items()
                         if p.requires_grad or id(p) in recorded}
        if is_model_wrapper(runner.model) and not getattr(
                runner.model, 'find_unused_parameters', True):
            raise ValueError(
                'QuadraticStageHook: stage 1 leaves the primary terms '
                'without gradients; set `find_unused_parameters = True` in '
                'the config for distributed training')
        # Only a training run has built its optimizer by now.
        if isinstance(getattr(runner, 'optim_wrapper', None),
                      (OptimWrapper, OptimWrapperDict)):
            self._split_param_groups(runner)

    def _split_param_groups(self, runner) -> None:
        wrappers = runner.optim_wrapper.values() if isinstance(
            runner.optim_wrapper, OptimWrapperDict) else [runner.optim_wrapper]
        primary_ids = {id(p) for p in self._primary.values()}
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for wrapper in wrappers:
            optimizer = wrapper.optimizer
            # Plain dicts for dynamo (see the class docstring); same order,
            # since the schedulers index groups by position.
            optimizer.param_groups[:] = [dict(group) for group in optimizer.param_groups]
            new_groups: List[dict] = []
            for index, group in enumerate(list(optimizer.param_groups)):
                primary = [p for p in group['params'] if id(p) in primary_ids]
                if not primary:
                    continue
                rest = [p for p in group['params'] if id(p) not in primary_ids]
                scaled = {k: v for k, v in group.items() if k != 'params'}
                for key in ('lr', 'initial_lr'):
                    if key in scaled:
                        scaled[key] = scaled[key] * self.primary_lr_mult
                if rest:
                    group['params'] = rest
                    new_groups.append(dict(scaled, params=primary))
                    for scheduler in schedulers:
                        if getattr(scheduler, 'optimizer', None) in (
                                wrapper, optimizer):
                            mult = self.primary_lr_mult if \
                                scheduler.param_name == 'lr' else 1.0
                            scheduler.base_values.append(
                                scheduler.base_values[index] * mult)
                            scheduler._last_value.append(
                                scheduler._last_value[index] * mult)
                else:
                    group.update(scaled)
                    for scheduler in schedulers:
                        if getattr(scheduler, 'optimizer', None) in (
                                wrapper, optimizer) and \
                                scheduler.param_name == 'lr':
                            scheduler.base_values[index] *= \
                                self.primary_lr_mult
                            scheduler._last_value[index] *= \
                                self.primary_lr_mult
            for group in new_groups:
                optimizer.add_param_group(group)

    def _apply(self, runner, stage: int) -> None:
        if stage == self.stage:
            return
        for param in self._primary.values():
            param.requires_grad_(stage == 2)
            if stage == 1:
                param.grad = None
        self.stage = stage
        where = (f'iteration {runner.iter}' if self.switch_iter is not None
                 else f'epoch {runner.epoch}')
        runner.logger.info(
            f'QuadraticStageHook: stage {stage} from {where}: '
            f'{len(self._primary)} primary parameters of `{self.module}` '
            + ('frozen' if stage == 1 else
               f'train at lr x{self.primary_lr_mult}'))

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._apply(runner, self.stage_at(runner.iter, runner.epoch))
