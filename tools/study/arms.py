"""The study's arms (one recipe each, equal budget) and part 3's variants of
the adapters-only recipe: an arm is a name, its config family and a function
that edits the loaded config."""

from dataclasses import dataclass
from typing import Callable

from mmengine.config import Config

from quadra_mm.comparison.arms import BUILTIN_ARMS

from .scale import TASKS

# U's lr multiplier of the qnv2-u-lr arm (LoRA+ style), as the comparison
# tool's `--u-lr-mult` default.
U_LR_MULT = 16.0


@dataclass(frozen=True)
class Arm:
    name: str
    family: str  # 'first-order' or 'qnv2': which config file
    pretrained: bool
    describe: str
    configure: Callable[[Config, int], None]


def _switch_at(cfg: Config, switch_iter: int) -> None:
    (hook,) = [h for h in cfg.custom_hooks if h['type'] == 'QuadraticStageHook']
    hook['switch_iter'] = switch_iter


def linear_probe(cfg: Config, iters: int) -> None:
    cfg.model.backbone.update(frozen_stages=4, norm_eval=True)


def train_everything(cfg: Config, iters: int) -> None:
    pass


def adapters_only(cfg: Config, iters: int) -> None:
    _switch_at(cfg, iters)  # stage 2 would start after the last iteration


def lora(cfg: Config, iters: int) -> None:
    cfg.model.backbone.adapter.interaction = 'linear'
    adapters_only(cfg, iters)


def norms_head(cfg: Config, iters: int) -> None:
    BUILTIN_ARMS['norms-head'].edit(cfg, U_LR_MULT)


def u_lr(cfg: Config, iters: int) -> None:
    BUILTIN_ARMS['qnv2-u-lr'].edit(cfg, U_LR_MULT)


def stages(cfg: Config, iters: int) -> None:
    _switch_at(cfg, iters // 2)


def from_scratch(cfg: Config, iters: int) -> None:
    if cfg.model.backbone.type == 'QuadraNetV2':
        cfg.model.backbone.init_cfg = None  # the ResNet's own random init
    else:
        cfg.model.backbone.pop('init_cfg')
    cfg.model.head.pop('init_cfg', None)
    cfg.custom_hooks = []


ARMS = (
    Arm(
        'linear-probe',
        'first-order',
        True,
        'pretrained backbone frozen (BN statistics too), head trains',
        linear_probe,
    ),
    Arm(
        'full-ft',
        'first-order',
        True,
        'first-order fine-tuning of every parameter',
        train_everything,
    ),
    Arm(
        'lora',
        'qnv2',
        True,
        "first-order low-rank adapter, interaction='linear' (phi = a + b): "
        'U((A+B)(x)), same placement and parameter count as qnv2; '
        'adapters, norms and head train',
        lora,
    ),
    Arm(
        'qnv2-adapters',
        'qnv2',
        True,
        'QNv2 quadratic adapters (stage 1 only): adapters, norms and head '
        'train, primary terms frozen',
        adapters_only,
    ),
    Arm(
        'norms-head',
        'qnv2',
        True,
        "QNv2 with its adapters frozen at U = 0 (the comparison tool's norms-head arm): "
        'norms and head train, primary terms frozen; the model stays first-order',
        norms_head,
    ),
    Arm(
        'qnv2-u-lr',
        'qnv2',
        True,
        f'QNv2 adapters only with U at {U_LR_MULT:g}x the lr of the rest (the comparison '
        "tool's qnv2-u-lr arm, LoRA+ style)",
        u_lr,
    ),
    Arm(
        'qnv2-stages',
        'qnv2',
        True,
        'QNv2 stage training: stage 1 for the first half, then everything '
        '(primary terms at lr x0.1)',
        stages,
    ),
    Arm(
        'quadranet-scratch',
        'qnv2',
        False,
        'the same quadratic ResNet from random init, every parameter trains',
        from_scratch,
    ),
    Arm(
        'first-order-scratch',
        'first-order',
        False,
        'the same first-order ResNet from random init',
        from_scratch,
    ),
)
ARM_BY_NAME = {arm.name: arm for arm in ARMS}

# Part 3b, on the shifted task: the recipes that train few parameters, at the
# study's budget and at BUDGET_FACTOR times it; the arms of a pair whose
# verdict is close (within 2 SE) get the scale's extra seeds.
BUDGET_FACTOR = 4
BUDGET_PART = f'budget-{BUDGET_FACTOR}x'
RECIPE_ARMS = ('full-ft', 'norms-head', 'lora', 'qnv2-adapters', 'qnv2-u-lr')
RECIPE_PAIRS = (
    ('qnv2-adapters', 'norms-head'),
    ('qnv2-adapters', 'lora'),
    ('qnv2-u-lr', 'qnv2-adapters'),
    ('qnv2-u-lr', 'lora'),
)

# Part 3, on the shifted task: variations of the adapters-only recipe.
ABLATIONS = (
    (
        'rbf',
        'kernel rbf (sigma 1), rank 8, all stages',
        lambda cfg: cfg.model.backbone.adapter.update(interaction='rbf'),
    ),
    (
        'poly',
        'kernel poly (degree 2, c 1), rank 8, all stages',
        lambda cfg: cfg.model.backbone.adapter.update(interaction='poly'),
    ),
    (
        'rank-4',
        'kernel quadratic, rank 4, all stages',
        lambda cfg: cfg.model.backbone.adapter.update(rank=4),
    ),
    (
        'rank-16',
        'kernel quadratic, rank 16, all stages',
        lambda cfg: cfg.model.backbone.adapter.update(rank=16),
    ),
    (
        'late-stages',
        'kernel quadratic, rank 8, stages 3-4 only',
        lambda cfg: cfg.model.backbone.update(stages=[2, 3]),
    ),
    # The two cheaper placements of docs/benchmarks.md (issue 7): a default
    # may change only with their accuracy measured here.
    (
        'stages-2-4',
        'kernel quadratic, rank 8, stages 2-4',
        lambda cfg: cfg.model.backbone.update(stages=[1, 2, 3]),
    ),
    (
        '1x1',
        'kernel quadratic, rank 8, 1x1 A/B (not atrous), all stages',
        lambda cfg: cfg.model.backbone.adapter.update(kernel_size=1, dilation=1),
    ),
)
PARTS = (
    'source',
    *TASKS,
    *(name for name, *_ in ABLATIONS),
    BUDGET_PART,
    'efficiency',
    'detection',
    'same-task',
    'pruning',
)
