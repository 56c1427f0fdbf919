"""The arms of a comparison: recipes derived from one loaded config by editing
it (never other files), so that every arm has the config's data, schedule,
model and checkpoints and differs only in what the arm is about.

Built-in arms (:data:`BUILTIN_ARMS`):

* ``full-ft``: the first-order backbone the ``QuadraNetV2`` wraps, from the
  same pretrained checkpoint, every parameter trains (the quadra-mm hooks
  that need quadratic layers are removed).
* ``norms-head``: the QNv2 model with its adapters frozen at ``U = 0``
  (``FrozenAdaptersHook``: the model computes the first-order function
  throughout) and the primary terms frozen: norms, neck and heads train.
  Does any adapter add anything?
* ``lora``: interaction ``'linear'`` (``phi = a + b``, so the adapter is
  ``U((A + B)(x))``, a first-order low-rank adapter), the same placement and
  parameter count as QNv2, phase 1 only, ``U`` at the common lr.
* ``qnv2-adapters``: the config's QNv2 model in phase 1 only: adapters, norms,
  neck and heads train, primary terms frozen, ``U`` at the common lr.
* ``qnv2-stages``: the config as it is (its own ``QuadraticStageHook``, with
  the config's ``u_lr_mult`` or the hook's default).
* ``qnv2-u-lr``: ``qnv2-adapters`` with ``U`` at ``M`` times the lr of the
  rest of its param group (``QuadraticStageHook(u_lr_mult=M)``, LoRA+ style;
  the hook, unlike ``paramwise_cfg.custom_keys``, works under any optimizer
  constructor, the ConvNeXt configs' layer-wise decay included).

"``U`` at the common lr" is ``u_lr_mult = 1`` on the stage hook(s), set by
the arm whatever the config writes or the hook's default is, so that
``lora`` and ``qnv2-adapters`` against ``qnv2-u-lr`` measure ``U``'s
multiplier alone.

A user arm ``name:key=value,key=value`` is the config with those
``--cfg-options``-style overrides merged (values parsed as mmengine's
``DictAction`` parses them).
"""

import argparse
import copy
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.config import Config, DictAction

__all__ = [
    'Arm',
    'BUILTIN_ARMS',
    'DEFAULT_ARMS',
    'parse_arm',
    'parse_arms',
    'ArmError',
    'arm_config',
    'schedule_length',
    'set_u_lr_mult',
    'backbone_type',
]

DEFAULT_ARMS = ('full-ft', 'lora', 'qnv2-adapters', 'qnv2-stages')
# quadra-mm hooks that need quadratic layers (dropped by the full-ft arm).
_QUADRATIC_HOOK_PREFIXES = ('Quadratic', 'Adapter')


class ArmError(ValueError):
    """An arm that cannot be made from the config (raised before training)."""


@dataclass(frozen=True)
class Arm:
    """A recipe: ``name``, what it is, and the edit of a loaded config."""

    name: str
    describe: str
    edit: Callable[[Config, float], None]  # (config, U lr multiplier)
    overrides: Dict[str, object] = field(default_factory=dict)

    def apply(self, cfg: Config, u_lr_mult: float = 16.0) -> Config:
        """A copy of ``cfg`` edited into this arm."""
        cfg = copy.deepcopy(cfg)
        self.edit(cfg, u_lr_mult)
        if self.overrides:
            cfg.merge_from_dict(self.overrides)
        return cfg


def backbone_type(cfg: Config) -> Optional[str]:
    """``model.backbone.type`` without a registry scope (``mmdet.X`` -> X)."""
    backbone = cfg.get('model', {}).get('backbone')
    if not isinstance(backbone, dict) or not isinstance(backbone.get('type'), str):
        return None
    return backbone['type'].split('.')[-1]


def schedule_length(cfg: Config) -> Dict[str, int]:
    """``{'switch_iter': max_iters}`` or ``{'switch_epoch': max_epochs}`` of
    the config's training loop: a stage switch there never happens."""
    train_cfg = cfg.get('train_cfg') or {}
    if train_cfg.get('max_iters') is not None:
        return dict(switch_iter=int(train_cfg['max_iters']))
    if train_cfg.get('max_epochs') is not None:
        return dict(switch_epoch=int(train_cfg['max_epochs']))
    raise ArmError(
        'train_cfg has neither max_iters nor max_epochs: the phase-1 '
        'arms need the length of the schedule'
    )


def _stage_hooks(cfg: Config) -> List[dict]:
    return [
        h
        for h in cfg.get('custom_hooks', [])
        if str(h.get('type', '')).split('.')[-1] == 'QuadraticStageHook'
    ]


def _phase1_only(cfg: Config) -> None:
    """Phase 1 for the whole schedule (the switch after the last step)."""
    hooks = _stage_hooks(cfg)
    if not hooks:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='QuadraticStageHook', **schedule_length(cfg))
        ]
        return
    for hook in hooks:
        hook.pop('switch_iter', None)
        hook.pop('switch_epoch', None)
        hook.update(schedule_length(cfg))
    # DDP: phase 1 leaves the primary terms without gradients
    cfg.find_unused_parameters = True


def _full_ft(cfg: Config, u_lr_mult: float) -> None:
    wrapper = cfg.model.backbone
    first_order = copy.deepcopy(wrapper.backbone)
    if wrapper.get('init_cfg') is not None:
        # QNv2 keeps the first-order state-dict keys: the same checkpoint
        # and prefix load into the first-order backbone
        first_order['init_cfg'] = copy.deepcopy(wrapper.init_cfg)
    cfg.model.backbone = first_order
    cfg.custom_hooks = [
        h
        for h in cfg.get('custom_hooks', [])
        if not str(h.get('type', '')).split('.')[-1].startswith(_QUADRATIC_HOOK_PREFIXES)
    ]


def _norms_head(cfg: Config, u_lr_mult: float) -> None:
    _phase1_only(cfg)
    # A, B and U keep their initial values, U = 0 (an lr_mult of 0 would not
    # do: a scheduler's eta_min still moves them)
    cfg.custom_hooks.append(dict(type='FrozenAdaptersHook'))


def _set_interaction(cfg: Config, interaction: str) -> None:
    adapter = cfg.model.backbone.setdefault('adapter', {})
    # the public key is `interaction`; configs written with the older
    # `kernel` keep it
    key = 'kernel' if 'kernel' in adapter and 'interaction' not in adapter else 'interaction'
    adapter[key] = interaction


def set_u_lr_mult(cfg: Config, u_lr_mult: float) -> None:
    """``u_lr_mult`` (``U``'s lr multiplier) on every ``QuadraticStageHook``
    of ``cfg``."""
    for hook in _stage_hooks(cfg):
        hook['u_lr_mult'] = u_lr_mult


def _lora(cfg: Config, u_lr_mult: float) -> None:
    _set_interaction(cfg, 'linear')
    _qnv2_adapters(cfg, u_lr_mult)


def _qnv2_adapters(cfg: Config, u_lr_mult: float) -> None:
    # `u_lr_mult` is qnv2-u-lr's M: here U stays at the common lr
    _phase1_only(cfg)
    set_u_lr_mult(cfg, 1.0)


def _qnv2_stages(cfg: Config, u_lr_mult: float) -> None:
    pass


def _qnv2_u_lr(cfg: Config, u_lr_mult: float) -> None:
    paramwise = (cfg.get('optim_wrapper') or {}).get('paramwise_cfg') or {}
    for key, options in (paramwise.get('custom_keys') or {}).items():
        if 'quad_u' in key and 'lr_mult' in (options or {}):
            raise ArmError(
                f"optim_wrapper.paramwise_cfg.custom_keys['{key}'] sets an lr_mult "
                f"({options['lr_mult']}) of U; the arm sets U's on QuadraticStageHook "
                '(u_lr_mult) and the two would compound: remove the custom key'
            )
    _phase1_only(cfg)
    set_u_lr_mult(cfg, u_lr_mult)


BUILTIN_ARMS: Dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm(
            'full-ft',
            'the wrapped first-order backbone, same checkpoint, every parameter trains',
            _full_ft,
        ),
        Arm(
            'norms-head',
            'QNv2 with adapters frozen at U = 0 and primary terms '
            'frozen: norms, neck and heads train',
            _norms_head,
        ),
        Arm(
            'lora',
            "interaction 'linear' (U((A+B)(x))), same placement and parameter count, "
            'phase 1 only, U at the common lr',
            _lora,
        ),
        Arm(
            'qnv2-adapters',
            'QNv2 phase 1 only: adapters, norms, neck and heads train, primary terms frozen, '
            'U at the common lr',
            _qnv2_adapters,
        ),
        Arm(
            'qnv2-stages',
            "the config's own schedule and U multiplier (its QuadraticStageHook)",
            _qnv2_stages,
        ),
        Arm(
            'qnv2-u-lr',
            'qnv2-adapters with U at a higher lr multiplier (QuadraticStageHook(u_lr_mult=M))',
            _qnv2_u_lr,
        ),
    )
}


def parse_arm(text: str) -> Arm:
    """A built-in arm by name, or a user arm ``name:key=value,...``.

    Raises:
        ArmError: an unknown name, or a user arm without overrides.
    """
    if ':' not in text:
        if text not in BUILTIN_ARMS:
            raise ArmError(
                f'unknown arm {text!r}: the built-in arms are '
                f'{sorted(BUILTIN_ARMS)}; a user arm is written '
                'name:key=value,key=value'
            )
        return BUILTIN_ARMS[text]
    name, _, spec = text.partition(':')
    pairs = [p for p in _split_top_level(spec) if p]
    if not name or not pairs or any('=' not in p for p in pairs):
        raise ArmError(f'user arm {text!r}: write name:key=value[,key=value...]')
    if name in BUILTIN_ARMS:
        raise ArmError(f'user arm {text!r}: {name!r} is a built-in arm; give yours another name')
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='overrides')(None, namespace, pairs)
    return Arm(name, 'the config with ' + ', '.join(pairs), _qnv2_stages, dict(namespace.overrides))


def _split_top_level(spec: str) -> List[str]:
    """``spec`` split at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, None, ''
    for char in spec:
        if quote:
            quote = None if char == quote else quote
        elif char in '\'"':
            quote = char
        elif char in '([{':
            depth += 1
        elif char in ')]}':
            depth -= 1
        elif char == ',' and depth == 0:
            parts.append(current)
            current = ''
            continue
        current += char
    return parts + [current]


def parse_arms(texts: Sequence[str]) -> List[Arm]:
    """:func:`parse_arm` of each, refusing a name given twice."""
    arms = [parse_arm(text) for text in texts]
    names = [arm.name for arm in arms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ArmError(f'arms given twice: {twice}')
    return arms


def arm_config(cfg: Config, arm: Arm, u_lr_mult: float = 16.0) -> Config:
    """``arm`` applied to ``cfg``; an :class:`ArmError` names the arm when
    the config does not have what the arm edits."""
    try:
        return arm.apply(cfg, u_lr_mult)
    except ArmError as error:
        raise ArmError(f'arm {arm.name}: {error}') from None
    except (KeyError, AttributeError, TypeError) as error:
        raise ArmError(
            f'arm {arm.name}: the config has no {error} '
            f'(model.backbone: {cfg.model.get("backbone")})'
        ) from None
