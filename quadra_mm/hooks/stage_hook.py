"""Stage training of quadratic networks (QuadraNet V2, Figure 5).

The paper's "stage training" runs in two **phases** (a "stage" elsewhere in
quadra-mm is a backbone stage): phase 1 trains the adapters with the
pretrained first-order parameters frozen, phase 2 trains everything.
"""

import weakref
from typing import Dict, List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import nn

from quadra_mm.adapters import quadratic_layers
from quadra_mm.ops import is_adapter_param_name
from quadra_mm.registry import register_hook

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def phase_one_frozen_parameters(model: nn.Module, module: str) -> Dict[str, nn.Parameter]:
    """The parameters of ``model.<module>`` that phase 1 of stage training
    freezes: its pretrained first-order parameters, i.e. all but the
    quadratic adapters and the normalisation layers. This is more than the
    primary parameters of the quadratic layers (``L``'s weight and bias,
    :meth:`quadra_mm.ops.QuadraticNeuron.primary_parameters`): the layers
    left first-order (stem, downsampling, ...) are frozen too."""
    target = getattr(model, module, None)
    if not isinstance(target, nn.Module):
        raise ValueError(
            f'QuadraticStageHook: the model '
            f'({type(model).__name__}) has no sub-module '
            f'`{module}` (hook option `module`)'
        )
    if not any(True for _ in quadratic_layers(target)):
        raise ValueError(
            f'QuadraticStageHook: model.{module} has no '
            'quadratic layers; use a QuadraNetV2 backbone'
        )
    norm_params = {
        id(p)
        for m in target.modules()
        if isinstance(m, _NORMS)
        for p in m.parameters(recurse=False)
    }
    return {
        f'{module}.{name}': p
        for name, p in target.named_parameters()
        if not is_adapter_param_name(name) and id(p) not in norm_params
    }


def _scaled(hyper: dict, mult: float) -> dict:
    """A param group's hyper-parameters with ``lr`` and ``initial_lr`` times
    ``mult``."""
    return {k: v * mult if k in ('lr', 'initial_lr') else v for k, v in hyper.items()}


@register_hook
class QuadraticStageHook(Hook):
    """Stage training of a QuadraNet V2 model, in two phases.

    * Phase 1 (before ``switch_iter`` / ``switch_epoch``): the backbone's
      pretrained first-order parameters, except norms (the primary terms and
      the layers left first-order; :func:`phase_one_frozen_parameters`), are
      frozen; the quadratic adapters, norms, neck and heads train.
    * Phase 2: everything trains; the phase-1-frozen parameters at
      ``primary_lr_mult`` times the learning rate of their parameter group.

    In both phases the adapters' up-projections ``U`` (``*.quad_u.*``) train
    at ``u_lr_mult`` times the learning rate of their parameter group
    ("LoRA+": ``U`` starts at zero and its update sets the quadratic term's
    size, so it may take a larger step than ``A`` and ``B``). With param
    group ``g`` at ``lr_g(t)`` under the param schedulers, a parameter ``p``
    of ``g`` trains at ``lr_p(t) = m_p * lr_g(t)``, where ``m_p`` is
    ``primary_lr_mult`` for a phase-1-frozen parameter, ``u_lr_mult`` for a
    ``U`` and 1 otherwise; ``lr_g`` is what the optimizer constructor gave
    the group (a layer-wise decay's, for one), so unlike
    ``paramwise_cfg.custom_keys`` (which mmdet's
    ``LearningRateDecayOptimizerConstructor`` ignores) this works with any
    constructor.

    The phase is a function of the runner's iteration (or epoch), so a run
    resumed on either side of the boundary is in the right phase.

    Only parameters that were trainable when the run started are toggled:
    what the backbone froze itself (``frozen_stages``, ``requires_grad=False``
    norms) stays frozen in phase 2. mmdet's ResNet, for one, re-freezes its
    stem and first stages only at the next ``model.train()``, and the optimizer
    holds those parameters: unfreezing them for an iteration (or, with an
    epoch-based loop, for a whole epoch) would update them.

    The learning-rate multipliers are set up once, in ``before_run``, before
    a resumed optimizer state is loaded: each optimizer parameter group that
    holds phase-1-frozen parameters (or ``U`` parameters, when ``u_lr_mult``
    is not 1) is split, each such part getting ``lr * m_p`` (and
    ``initial_lr * m_p``); param schedulers are extended to match. With
    ``u_lr_mult = 1`` the ``U`` parameters stay in their groups.
    Every group the hook leaves is a plain ``dict``: with ``paramwise_cfg``,
    mmengine's optimizer constructors hand the optimizer ``ConfigDict``
    groups, on which dynamo fails in ``AdamW.step`` when the config sets
    ``compile = True``.
    Under DistributedDataParallel, phase 1 leaves parameters without
    gradients, so the config must set ``find_unused_parameters = True``.

    Args:
        switch_iter (int, optional): first iteration of phase 2.
        switch_epoch (int, optional): first epoch of phase 2 (0-based, as
            ``runner.epoch``); give exactly one of the two.
        primary_lr_mult (float): lr multiplier, in phase 2, of the
            parameters phase 1 froze.
        u_lr_mult (float): lr multiplier, in both phases, of the adapters'
            ``U`` (on top of their group's lr); > 0. The default, 16, is the
            recipe the adaptation study chose (docs/study.md, section "The
            recipe and the budget (task b)"); 1 is the earlier behaviour,
            ``U`` at the lr of its group, as the optimizer constructor put it.
        module (str): the sub-module holding the primary terms (the backbone).
    """

    priority = 'HIGH'

    def __init__(
        self,
        switch_iter: Optional[int] = None,
        switch_epoch: Optional[int] = None,
        primary_lr_mult: float = 0.1,
        u_lr_mult: float = 16.0,
        module: str = 'backbone',
    ) -> None:
        if (switch_iter is None) == (switch_epoch is None):
            raise ValueError(
                'QuadraticStageHook: give exactly one of `switch_iter` and `switch_epoch`'
            )
        switch = switch_iter if switch_iter is not None else switch_epoch
        if not isinstance(switch, int) or switch < 0:
            raise ValueError(
                f'QuadraticStageHook: the switch point must be a non-negative int, got {switch!r}'
            )
        if primary_lr_mult < 0:
            raise ValueError(
                f'QuadraticStageHook: `primary_lr_mult` must be >= 0, got {primary_lr_mult}'
            )
        self.switch_iter = switch_iter
        self.switch_epoch = switch_epoch
        if not u_lr_mult > 0:
            raise ValueError(f'QuadraticStageHook: `u_lr_mult` must be > 0, got {u_lr_mult}')
        self.primary_lr_mult = primary_lr_mult
        self.u_lr_mult = u_lr_mult
        self.module = module
        self.phase: Optional[int] = None
        self._frozen_in_phase_one: Dict[str, nn.Parameter] = {}
        # the optimizers whose groups carry the multipliers already: a second
        # run of the hook must not apply them again
        self._split_optimizers: weakref.WeakSet = weakref.WeakSet()

    @property
    def frozen_in_phase_one(self) -> Dict[str, nn.Parameter]:
        """The parameters the phase switch toggles (after ``before_run``)."""
        return dict(self._frozen_in_phase_one)

    def _model(self, runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def phase_at(self, iteration: int, epoch: int) -> int:
        if self.switch_iter is not None:
            return 2 if iteration >= self.switch_iter else 1
        return 2 if epoch >= self.switch_epoch else 1

    def before_run(self, runner) -> None:
        frozen = phase_one_frozen_parameters(self._model(runner), self.module)
        # `self._frozen_in_phase_one` is kept across runs of one hook: a
        # second run (e.g. after an interrupted `runner.train()`) finds these
        # parameters frozen by this hook, not by the backbone.
        recorded = {id(p) for p in self._frozen_in_phase_one.values()}
        self._frozen_in_phase_one = {
            name: p for name, p in frozen.items() if p.requires_grad or id(p) in recorded
        }
        if is_model_wrapper(runner.model) and not getattr(
            runner.model, 'find_unused_parameters', True
        ):
            raise ValueError(
                'QuadraticStageHook: phase 1 leaves the pretrained parameters '
                'without gradients; set `find_unused_parameters = True` in '
                'the config for distributed training'
            )
        # Only a training run has built its optimizer by now.
        if isinstance(getattr(runner, 'optim_wrapper', None), (OptimWrapper, OptimWrapperDict)):
            self._split_param_groups(runner)

    def _lr_multipliers(self, runner) -> Dict[int, float]:
        """``id(parameter) -> m_p`` for the parameters whose lr the hook
        scales (see the class docstring); the others keep their group's."""
        multipliers = {id(p): self.primary_lr_mult for p in self._frozen_in_phase_one.values()}
        if self.u_lr_mult != 1.0:
            for _, layer in quadratic_layers(self._model(runner)):
                for param in layer.quad_u.parameters():
                    multipliers[id(param)] = self.u_lr_mult
        return multipliers

    def _split_param_groups(self, runner) -> None:
        """Split every optimizer param group by :meth:`_lr_multipliers`: the
        parameters of one multiplier ``m`` become a group at ``lr * m`` (and
        ``initial_lr * m``), appended after the existing groups, or, when they
        are the whole group, the group itself scaled in place; each param
        scheduler's ``base_values`` and ``_last_value`` follow its view of the
        groups (an ``OptimWrapper`` of several groups shows its
        ``base_param_settings`` after the optimizer's)."""
        wrappers = (
            runner.optim_wrapper.values()
            if isinstance(runner.optim_wrapper, OptimWrapperDict)
            else [runner.optim_wrapper]
        )
        multipliers = self._lr_multipliers(runner)
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for wrapper in wrappers:
            optimizer = wrapper.optimizer
            if optimizer in self._split_optimizers:
                continue
            self._split_optimizers.add(optimizer)
            # Plain dicts for dynamo (see the class docstring); same order,
            # since the schedulers index groups by position.
            optimizer.param_groups[:] = [dict(group) for group in optimizer.param_groups]
            own = [s for s in schedulers if getattr(s, 'optimizer', None) in (wrapper, optimizer)]
            # each scheduler's (base value, last value) by group, before the split
            values = [
                {
                    id(group): pair
                    for group, pair in zip(
                        s.optimizer.param_groups, zip(s.base_values, s._last_value)
                    )
                }
                for s in own
            ]
            # id(group) -> (id of the group it came from, its lr multiplier)
            origin: Dict[int, Tuple[int, float]] = {}
            new_groups: List[dict] = []
            for group in list(optimizer.param_groups):
                parts: Dict[float, List[nn.Parameter]] = {}
                for p in group['params']:
                    if id(p) in multipliers:
                        parts.setdefault(multipliers[id(p)], []).append(p)
                if not parts:
                    continue
                hyper = {k: v for k, v in group.items() if k != 'params'}
                rest = [p for p in group['params'] if id(p) not in multipliers]
                appended = list(parts.items())
                if rest:
                    group['params'] = rest
                else:  # the first part keeps the group, scaled in place
                    mult, params = appended.pop(0)
                    group.update(_scaled(hyper, mult), params=params)
                    origin[id(group)] = (id(group), mult)
                for mult, params in appended:
                    new_groups.append(dict(_scaled(hyper, mult), params=params))
                    origin[id(new_groups[-1])] = (id(group), mult)
            for group in new_groups:
                optimizer.add_param_group(group)
            for scheduler, by_group in zip(own, values):
                base_values, last_values = [], []
                for group in scheduler.optimizer.param_groups:
                    source, mult = origin.get(id(group), (id(group), 1.0))
                    factor = mult if scheduler.param_name == 'lr' else 1.0
                    base_value, last_value = by_group[source]
                    base_values.append(base_value * factor)
                    last_values.append(last_value * factor)
                scheduler.base_values, scheduler._last_value = base_values, last_values

    def _apply(self, runner, phase: int) -> None:
        if phase == self.phase:
            return
        for param in self._frozen_in_phase_one.values():
            param.requires_grad_(phase == 2)
            if phase == 1:
                param.grad = None
        self.phase = phase
        where = (
            f'iteration {runner.iter}' if self.switch_iter is not None else f'epoch {runner.epoch}'
        )
        runner.logger.info(
            f'QuadraticStageHook: phase {phase} from {where}: '
            f'{len(self._frozen_in_phase_one)} pretrained parameters of `{self.module}` '
            + ('frozen' if phase == 1 else f'train at lr x{self.primary_lr_mult}')
            + (f"; the adapters' U at lr x{self.u_lr_mult}" if self.u_lr_mult != 1.0 else '')
        )

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._apply(runner, self.phase_at(runner.iter, runner.epoch))
