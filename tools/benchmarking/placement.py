"""Which layers carry adapters: the cost of each placement (stages x rank x k) and of
pruned placements (adapters switched off and dropped at export)."""

import copy
from typing import Dict, List

from quadra_mm.adapters import quadratic_layers
from quadra_mm.adapters.pruning import prune_fraction, prune_to_flops, switch_off
from quadra_mm.deploy import export_for_inference

from .flops import adapter_forward_flops, forward_flops
from .harness import ratio
from .inference import eval_times, inference_times
from .regimes import Bench

# Placement table: (label, 0-based stages or None for all) x rank x adapter k.
PLACEMENT_STAGES = (('all (0-3)', None), ('1-3', (1, 2, 3)), ('2-3', (2, 3)))
PLACEMENT_RANKS = (4, 8, 16)
PLACEMENT_KS = (3, 1)
# The rows that are also timed (the full grid would take about an hour on one core);
# all stages at rank 8, k=3 is the main table's row.
PLACEMENTS_TIMED = (('1-3', 8, 3), ('2-3', 8, 3), ('all (0-3)', 4, 3), ('all (0-3)', 8, 1))
# Pruned placements (issue 18): a fraction of the adapters, or a forward FLOPs budget.
PRUNED_SETTINGS = (
    ('25 %', dict(fraction=0.25)),
    ('50 %', dict(fraction=0.5)),
    ('<= 1.02x FLOPs', dict(max_ratio=1.02)),
)


def placement_rows(name: str, builder, targets, args) -> List[Dict[str, str]]:
    """Forward FLOPs of every placement, step and inference ratios of the timed ones
    (first precision of ``--dtype``, full regime, exported inference)."""
    rows = []
    first_order_flops = None
    for label, stages in PLACEMENT_STAGES:
        for rank in PLACEMENT_RANKS:
            for k in PLACEMENT_KS:
                adapter = dict(rank=rank, kernel_size=k, dilation=2 if k > 1 else 1)
                bench = Bench(builder, targets, args, args.dtype[0], adapter, stages)
                if first_order_flops is None:
                    first_order_flops = forward_flops(bench.models['first_order'], bench.x)
                row = {
                    'model': name,
                    'stages': label,
                    'rank': str(rank),
                    'k': str(k),
                    'adapters': str(len(list(quadratic_layers(bench.models['adapted'])))),
                    'params': bench.params_overhead(),
                    'FLOPs fwd': ratio(
                        forward_flops(bench.models['adapted'], bench.x), first_order_flops
                    ),
                    'step': '',
                    'infer (exported)': '',
                }
                if (label, rank, k) in PLACEMENTS_TIMED:
                    train = bench.train_times()
                    infer = inference_times(bench)
                    row['step'] = ratio(train['adapted'], train['first_order'])
                    row['infer (exported)'] = ratio(infer['exported'], infer['first_order'])
                print(row, flush=True)
                rows.append(row)
    return rows


def pruned_rows(name: str, builder, targets, args) -> List[Dict[str, str]]:
    """Exported inference of pruned placements against the first-order model, in one
    timing loop with the unpruned exported model: the adapters of ``PRUNED_SETTINGS``
    switched off (``U = 0``) and dropped by ``export_for_inference(drop_zero_adapters=
    True)``, the most expensive first, which is the order importance per FLOP gives
    adapters that matter equally (first precision of ``--dtype``)."""
    bench = Bench(builder, targets, args, args.dtype[0])
    first_order, adapted = bench.models['first_order'], bench.models['adapted']
    flops = adapter_forward_flops(adapted, bench.x)
    f0 = forward_flops(first_order, bench.x)
    order = sorted(flops, key=lambda n: (-flops[n], n))
    variants = {'first_order': first_order, 'unpruned': export_for_inference(adapted)}
    pruned_sets = {}
    for label, rule in PRUNED_SETTINGS:
        names = (
            prune_to_flops(order, flops, f0, rule['max_ratio'])
            if 'max_ratio' in rule
            else prune_fraction(order, rule['fraction'])
        )
        pruned = copy.deepcopy(adapted)
        layers = dict(quadratic_layers(pruned))
        switch_off(layers[n] for n in names)
        variants[label] = export_for_inference(pruned, drop_zero_adapters=True)
        pruned_sets[label] = names
    times = eval_times(bench, variants)
    stage_of = {n: layer.stage for n, layer in quadratic_layers(adapted)}
    rows = []
    for label in ['unpruned', *pruned_sets]:
        names = pruned_sets.get(label, [])
        stages = sorted({str(stage_of[n]) for n in names})
        row = {
            'model': name,
            'pruned': label if names else 'none',
            'adapters off': f'{len(names)} of {len(flops)}',
            'stages pruned (0-based)': ', '.join(stages) or '-',
            'FLOPs fwd': ratio(forward_flops(variants[label], bench.x), f0),
            'infer (exported)': ratio(times[label], times['first_order']),
        }
        print(row, flush=True)
        rows.append(row)
    return rows
