"""What each quadratic adapter of a model is worth on an mm val (or test) set,
per forward FLOP: the scoring behind ``tools/analysis_tools/adapter_importance.py``
and :class:`~quadra_mm.hooks.AdapterPruningHook`.

Per adapter (a quadratic layer ``y = L(x) + s U(phi(A x, B x))``):

* forward FLOPs ``f_i``: mmengine's ``FlopAnalyzer`` (what mmdet's
  ``get_flops.py`` runs) on the exported (fused) form and the first image, as
  the difference per layer with every adapter on and every adapter off (a
  fused layer with ``U = 0`` skips its branch; the all-off count ``F_0`` is
  the first-order model's);
* the branch-to-primary norm ratio ``||s U(phi(A x, B x))|| / ||L(x)||`` over
  the set (the batches summed in quadrature, as ``QuadraticStatsHook`` sums a
  stage's layers);
* with the ``ablation`` scorer, the metric drop when that adapter alone is off
  (``U = 0``, restored after).

The importance is the metric drop (``ablation``) or the norm ratio
(``norm``); adapters rank by importance per FLOP (importance divided by the
FLOP share in %), ties broken by the norm ratio per FLOP. ``ablation`` is
exact (what switching an adapter off costs in the metric a pruning budget
trades against) at one pass per adapter plus one; ``norm`` is one pass, but a
proxy: a large branch may be redundant and a small one decisive.
"""

import functools
import math
from dataclasses import dataclass
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.runner.amp import autocast
from mmengine.utils import ProgressBar
from torch import nn

from .adapters.pruning import adapter_flops, prune_fraction, prune_to_flops, switched_off
from .deploy import export_for_inference
from .ops import QuadraticNeuron

__all__ = [
    'SCORERS',
    'Evaluation',
    'Scores',
    'score_adapters',
    'adapters_to_prune',
    'least_important_first',
    'pruning_rule',
    'ranking',
    'metric_of',
    'count_flops',
]

SCORERS = ('ablation', 'norm')


class Evaluation:
    """Passes of a runner's val or test loop (dataloader, evaluator, fp16) on
    a model, batch by batch as ``ValLoop.run_iter`` does but without the
    runner's hooks (a ``save_best`` CheckpointHook would write after each
    pass), advancing one progress bar."""

    def __init__(self, loop, model: nn.Module) -> None:
        self.model = model
        self.dataloader = loop.dataloader
        self.evaluator = loop.evaluator
        self.fp16 = getattr(loop, 'fp16', False)
        self.bar: Optional[ProgressBar] = None

    def start(self, passes: int) -> None:
        self.bar = ProgressBar(passes * len(self.dataloader))

    @torch.no_grad()
    def run(self, after_batch: Optional[Callable[[], None]] = None) -> dict:
        self.model.eval()
        for data_batch in self.dataloader:
            with autocast(enabled=self.fp16):
                outputs = self.model.val_step(data_batch)
            self.evaluator.process(data_samples=outputs, data_batch=data_batch)
            if after_batch is not None:
                after_batch()
            if self.bar is not None:
                self.bar.update()
        return self.evaluator.evaluate(len(self.dataloader.dataset))


def norm_ratios(evaluation: Evaluation, layers: Dict[str, QuadraticNeuron]) -> tuple:
    """One val pass with the layers' ``record_stats`` on: the metrics and per
    layer ``sqrt(sum ||branch||^2 / sum ||L(x)||^2)`` over the batches."""
    sums = {name: [0.0, 0.0] for name in layers}

    def accumulate() -> None:
        for name, layer in layers.items():
            if layer.last_stats is not None:
                branch, primary = layer.last_stats
                sums[name][0] += float(branch) ** 2
                sums[name][1] += float(primary) ** 2
                layer.last_stats = None

    for layer in layers.values():
        layer.record_stats = True
    try:
        metrics = evaluation.run(accumulate)
    finally:
        for layer in layers.values():
            layer.record_stats = False
    return metrics, {name: math.sqrt(b / p) if p > 0 else 0.0 for name, (b, p) in sums.items()}


def flop_input(model: nn.Module, dataloader) -> tuple:
    """``(inputs, data_samples)`` of the first val image, preprocessed as
    mmdet's ``get_flops.py`` does (``data_preprocessor``, test mode)."""
    batch = next(iter(dataloader))
    one = {key: value[:1] for key, value in batch.items()}
    data = model.data_preprocessor(one, False)
    return data['inputs'], data.get('data_samples')


def count_flops(model: nn.Module, inputs, data_samples) -> Dict[str, int]:
    """FLOPs per module name (``''``: the whole model) of ``model``'s tensor
    forward, mmengine's counter (1 multiply-add = 1 FLOP)."""
    forward = functools.partial(
        type(model).forward, model, data_samples=data_samples, mode='tensor'
    )
    model.forward = forward  # as get_flops.py: the tracer calls model.forward
    try:
        analyzer = FlopAnalyzer(model, (inputs,))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return dict(analyzer.by_module())
    finally:
        del model.forward


def metric_of(metrics: dict, key: str, what: str) -> float:
    """``metrics[key]`` as a float.

    Raises:
        KeyError: the evaluator returned no ``key`` (the message names what was
            evaluated and the keys it did return).
    """
    if key not in metrics:
        raise KeyError(f'{what}: the evaluator returned no {key!r} (it returned {sorted(metrics)})')
    return float(metrics[key])


def ranking(rows: List[dict]) -> List[dict]:
    """Rows ordered most important per FLOP first (ties: norm ratio per FLOP,
    then name), with their ``rank`` (1 = most important)."""

    def per_flop(value: float, row: dict) -> float:
        return value / row['flop_share_pct'] if row['flop_share_pct'] > 0 else 0.0

    for row in rows:
        row['importance_per_flop_pct'] = per_flop(row['importance'], row)
    ordered = sorted(
        rows,
        key=lambda r: (-r['importance_per_flop_pct'], -per_flop(r['norm_ratio'], r), r['adapter']),
    )
    for rank, row in enumerate(ordered, 1):
        row['rank'] = rank
    return ordered


@dataclass
class Scores:
    """What :func:`score_adapters` measured: ``rows`` ranked most important
    per FLOP first (one per adapter, the table's columns), the val metric
    ``metric`` of the unpruned model, the forward FLOPs with every adapter
    off (the first-order model's) and on, and the exported model with the
    input its FLOPs were counted on (to count a pruned set again)."""

    rows: List[dict]
    metric: str
    val_metric: float
    first_order_flops: int
    adapted_flops: int
    exported: nn.Module
    flop_inputs: Tuple[torch.Tensor, object]

    def flops_ratio(self, pruned: Collection[str]) -> float:
        """``(F_0 + sum of the kept f_i) / F_0`` with the adapters ``pruned`` off."""
        kept = sum(row['flops'] for row in self.rows if row['adapter'] not in pruned)
        return (self.first_order_flops + kept) / self.first_order_flops


def score_adapters(
    evaluation: Evaluation,
    layers: Dict[str, QuadraticNeuron],
    scorer: str,
    metric: Optional[str] = None,
) -> Scores:
    """Score every adapter of ``layers`` (named as in ``evaluation.model``)
    on ``evaluation``'s data: parameter and FLOP shares, the norm ratio and,
    with ``scorer='ablation'``, the metric drop with that adapter alone off.
    ``metric`` defaults to the evaluator's first."""
    if scorer not in SCORERS:
        raise ValueError(f'unknown adapter scorer {scorer!r}; choose one of {SCORERS}')
    model = evaluation.model
    metrics, ratios = norm_ratios(evaluation, layers)
    key = metric or next(iter(metrics), None)
    val_metric = metric_of(metrics, key, 'unpruned model')

    exported = export_for_inference(model)
    inputs, data_samples = flop_input(exported, evaluation.dataloader)
    flops, adapted, first_order = adapter_flops(
        exported, lambda m: count_flops(m, inputs, data_samples)
    )

    params_total = sum(p.numel() for p in model.parameters())
    rows = []
    for name, layer in layers.items():
        params = sum(p.numel() for p in layer.adapter_parameters())
        drop = None
        if scorer == 'ablation':
            with switched_off([layer]):
                drop = val_metric - metric_of(evaluation.run(), key, f'{name} off')
        rows.append(
            dict(
                stage='all' if layer.stage is None else layer.stage,
                adapter=name,
                params=params,
                param_share_pct=100 * params / params_total,
                flops=flops[name],
                flop_share_pct=100 * flops[name] / adapted,
                norm_ratio=ratios[name],
                metric_drop=drop,
                importance=ratios[name] if drop is None else drop,
                pruned=False,
            )
        )
    return Scores(
        ranking(rows), key, val_metric, first_order, adapted, exported, (inputs, data_samples)
    )


def least_important_first(rows: Sequence[dict]) -> List[str]:
    """The adapters of ranked ``rows`` (:func:`ranking`), the least important
    per FLOP first: the order in which pruning switches them off."""
    return [row['adapter'] for row in reversed(rows)]


def pruning_rule(max_ratio: Optional[float] = None, fraction: Optional[float] = None) -> str:
    """How :func:`adapters_to_prune` chooses, in words (for logs and tables)."""
    if max_ratio is not None:
        return f'forward FLOPs <= {max_ratio}x first-order'
    return f'fraction {fraction} of the adapters'


def adapters_to_prune(
    scores: Scores, max_ratio: Optional[float] = None, fraction: Optional[float] = None
) -> List[str]:
    """The adapters to switch off, least important per FLOP first: as many as
    the forward FLOPs budget ``max_ratio`` (x the first-order model) needs
    (:func:`prune_to_flops`), or the ``fraction`` of them
    (:func:`prune_fraction`); give exactly one."""
    if (max_ratio is None) == (fraction is None):
        raise ValueError('give exactly one of a FLOPs budget and a fraction of the adapters')
    order = least_important_first(scores.rows)
    if max_ratio is not None:
        return prune_to_flops(
            order,
            {row['adapter']: row['flops'] for row in scores.rows},
            scores.first_order_flops,
            max_ratio,
        )
    return prune_fraction(order, fraction)
