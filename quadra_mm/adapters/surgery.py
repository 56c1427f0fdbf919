"""Model surgery: put quadratic adapters on the layers of a pretrained model."""

import inspect
import re
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    Union,
)

from torch import nn

from ..ops import QuadraticConv2d, QuadraticLinear, QuadraticNeuron
from .presets import PRESETS, auto_preset

__all__ = [
    'inject_quadratic_adapters',
    'quadratic_layers',
    'reset_adapters',
    'mark_trainable',
    'replace_module',
    'register_adaptable',
]

TargetSpec = Union[str, Sequence[Dict[str, Any]]]
AdapterFactory = Callable[..., QuadraticNeuron]

# Layer type -> factory(layer, name=..., **options) of its quadratic layer. Beyond the
# torch layers, quadra_mm.models registers mmcv's deformable convs: this package must
# not import mmcv.
_ADAPTABLE: Dict[Type[nn.Module], AdapterFactory] = {
    nn.Conv2d: QuadraticConv2d.from_conv,
    nn.Linear: QuadraticLinear.from_linear,
}
# mmcv's Conv2d/Linear wrappers only add an empty-tensor path for torch < 1.6 and
# otherwise run the nn forward; they are recognised by module path so that this
# package never imports mmcv.
_MMCV_WRAPPERS = 'mmcv.cnn.bricks.wrappers'


def _option_names(factory: AdapterFactory) -> Set[str]:
    """The adapter options ``factory`` takes: its parameters after the layer, but
    ``name``."""
    return set(list(inspect.signature(factory).parameters)[1:]) - {'name'}


def _all_options() -> Set[str]:
    return set().union(*map(_option_names, _ADAPTABLE.values()))


def _type_name(cls: type) -> str:
    return f'nn.{cls.__name__}' if cls.__module__.startswith('torch.nn') else cls.__name__


def register_adaptable(layer_type: Type[nn.Module], factory: AdapterFactory) -> None:
    """Let the surgery adapt layers of ``layer_type`` (and of subclasses that keep its
    ``forward``).

    Args:
        layer_type: the first-order layer class.
        factory: ``factory(layer, name=..., **options) -> QuadraticNeuron`` wrapping
            ``layer``; its keyword parameters are the adapter options it takes.
    """
    _ADAPTABLE[layer_type] = factory


@dataclass
class _Target:
    pattern: str
    options: Dict[str, Any] = field(default_factory=dict)
    stage_offset: int = 0

    def match(self, name: str) -> Tuple[bool, Optional[int]]:
        """``(matched, stage)``, with mmpretrain LoRAModel's semantics: full regex match
        or plain suffix; the stage comes from a ``stage`` group of a regex match."""
        found = re.fullmatch(self.pattern, name)
        if found is None:
            return name.endswith(self.pattern), None
        stage = found.groupdict().get('stage')
        return True, None if stage is None else int(stage) - self.stage_offset


def _check_options(options: Dict[str, Any], where: str) -> None:
    valid = _all_options()
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f'{where}: unknown adapter option(s) {unknown}; valid: {sorted(valid)}')


def _parse_targets(targets: TargetSpec) -> List[_Target]:
    if isinstance(targets, str):
        if targets not in PRESETS:
            raise ValueError(f'unknown preset {targets!r}; valid presets: {sorted(PRESETS)}')
        preset = PRESETS[targets]
        return [_Target(pattern, stage_offset=preset.stage_offset) for pattern in preset.patterns]
    parsed = []
    for spec in targets:
        options = dict(spec)
        if 'type' not in options:
            raise ValueError(f'target {spec!r} has no "type" (the module-name pattern)')
        pattern = options.pop('type')
        _check_options(options, f'target {pattern!r}')
        parsed.append(_Target(pattern, options))
    return parsed


def _check_replaceable(
    model: nn.Module, name: str, module: nn.Module, pattern: str
) -> Type[nn.Module]:
    """The adaptable base class of ``module`` (a key of ``_ADAPTABLE``).

    Raises:
        ValueError: ``module`` cannot be adapted; the message names it and why.
    """
    where = f'module {name!r} (matched by {pattern!r})'
    if isinstance(module, QuadraticNeuron):
        raise ValueError(f'{where} already has a quadratic adapter')
    base = next((cls for cls in type(module).__mro__ if cls in _ADAPTABLE), None)
    if base is None:
        raise ValueError(
            f'{where} is a {type(module).__name__}, not one of the layer types '
            f'that take an adapter: {", ".join(map(_type_name, _ADAPTABLE))}'
        )
    if type(module).forward is not base.forward and type(module).__module__ != _MMCV_WRAPPERS:
        raise ValueError(
            f'{where} is a {type(module).__qualname__}, which overrides '
            f'{base.__name__}.forward; its behaviour would be lost'
        )
    parent = model.get_submodule(name.rpartition('.')[0])
    if isinstance(parent, nn.MultiheadAttention):
        raise ValueError(
            f'{where} belongs to an nn.MultiheadAttention, which reads its '
            'weight directly and never calls it'
        )
    return base


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Set the submodule called ``name`` (dotted path) of ``model`` to ``module``."""
    parent_name, _, child = name.rpartition('.')
    setattr(model.get_submodule(parent_name), child, module)


def _build(
    name: str, module: nn.Module, base: Type[nn.Module], target: _Target, defaults: Dict[str, Any]
) -> QuadraticNeuron:
    factory = _ADAPTABLE[base]
    accepted = _option_names(factory)
    not_applicable = sorted(set(target.options) - accepted)
    if not_applicable:
        raise ValueError(
            f'target {target.pattern!r}: option(s) {not_applicable} do not apply '
            f'to the {_type_name(base)} {name!r}'
        )
    options = {**defaults, **target.options}
    return factory(module, name=name, **{k: v for k, v in options.items() if k in accepted})


def inject_quadratic_adapters(
    model: nn.Module, targets: TargetSpec, stages: Optional[Iterable[int]] = None, **defaults: Any
) -> List[str]:
    """Replace matching ``nn.Conv2d`` / ``nn.Linear`` layers (and the types given to
    :func:`register_adaptable`: mmcv's deformable convs) by quadratic layers, in place.

    The new layers share the original weight and bias Parameters and compute exactly the
    original output until their ``U`` leaves zero.

    Args:
        model: the model to modify.
        targets: a preset name (:data:`~quadra_mm.adapters.PRESETS`), or a list of
            ``dict(type=<pattern>, **options)``. A module matches a pattern when
            ``re.fullmatch(pattern, name)`` or ``name.endswith(pattern)`` (mmpretrain's
            ``LoRAModel``); the first matching target wins. A named group
            ``(?P<stage>\\d+)`` in a pattern gives the module's 0-based stage.
        stages: if given, only modules whose stage is in it are adapted.
        **defaults: options for every target (``rank``, ``kernel_size``, ``dilation``,
            ``interaction``, ``interaction_cfg`` (old names ``kernel``, ``kernel_cfg``),
            ``alpha``, ``depthwise``, ``memory_efficient``),
            overridden by the target's own; conv-only ones are ignored for linears.

    Returns:
        Names of the replaced modules, in module order.

    Raises:
        ValueError: unknown preset or option; a pattern that matches nothing; a match
            that is not a plain ``nn.Conv2d``/``nn.Linear`` (or mmcv's wrappers) or a
            registered type, or already quadratic; a stage that cannot be read or matches
            nothing; an adapter the layer cannot take (rank <= 0, a shape-changing
            kernel/dilation).
            The model is left unchanged.
    """
    _check_options(defaults, 'defaults')
    if targets == 'auto':
        targets = auto_preset(model)
    parsed = _parse_targets(targets)
    wanted_stages = None if stages is None else set(stages)
    adapted_roots = [name for name, _ in quadratic_layers(model)]
    hits = [0] * len(parsed)
    plan = []
    for name, module in model.named_modules():
        # The adapter's own convs/linears are never targets.
        if not name or any(name.startswith(root + '.') for root in adapted_roots):
            continue
        for index, target in enumerate(parsed):
            matched, stage = target.match(name)
            if matched:
                break
        else:
            continue
        hits[index] += 1
        base = _check_replaceable(model, name, module, target.pattern)
        if wanted_stages is not None:
            if stage is None:
                raise ValueError(
                    f'cannot restrict {name!r} to stages: pattern {target.pattern!r} '
                    'has no (?P<stage>\\d+) group matching it'
                )
            if stage not in wanted_stages:
                continue
        plan.append((name, module, base, target, stage))
    unmatched = [target.pattern for target, count in zip(parsed, hits) if not count]
    if unmatched:
        raise ValueError(f'target pattern(s) {unmatched} match no module of the model')
    if wanted_stages is not None:
        empty = sorted(wanted_stages - {stage for *_, stage in plan})
        if empty:
            patterns = [t.pattern for t in parsed]
            raise ValueError(f'stage(s) {empty} contain no module matching {patterns}')
    # Build everything before touching the model, so that an error leaves it unchanged.
    built = [
        (name, _build(name, module, base, target, defaults), stage)
        for name, module, base, target, stage in plan
    ]
    for name, layer, stage in built:
        layer.stage = stage
        replace_module(model, name, layer)
    return [name for name, *_ in built]


def quadratic_layers(model: nn.Module) -> Iterator[Tuple[str, QuadraticNeuron]]:
    """``(name, layer)`` for every quadratic layer of ``model``, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, QuadraticNeuron):
            yield name, module


def reset_adapters(model: nn.Module) -> None:
    """Re-initialise every adapter (``U`` back to zero). Call it after an mm
    ``init_weights``, which re-initialises every Conv2d/Linear, adapters included."""
    for _, layer in quadratic_layers(model):
        layer.reset_adapter()


def mark_trainable(model: nn.Module, primary: bool = False) -> None:
    """Freeze ``model`` except the adapters.

    Args:
        primary: also train the quadratic layers' own parameters (``L``: weight, bias,
            a deformable conv's offset conv).
            Every parameter outside the quadratic layers is frozen either way.
    """
    model.requires_grad_(False)
    for _, layer in quadratic_layers(model):
        for param in layer.adapter_parameters():
            param.requires_grad_(True)
        for param in layer.primary_parameters():
            param.requires_grad_(primary)
