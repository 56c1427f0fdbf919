"""Rank the quadratic adapters of a trained QNv2 model (detector or classifier)
by what each is worth on the config's val set, per FLOP, and optionally switch
off the least worth until a FLOPs budget holds.

    python tools/analysis_tools/adapter_importance.py CONFIG CHECKPOINT
        [--work-dir DIR] [--out-dir DIR] [--scorer {ablation,norm}]
        [--metric KEY] [--prune-to-flops R | --prune-fraction F]
        [--cfg-options KEY=VALUE ...]

Per adapter (:mod:`quadra_mm.importance`, which also drives
``AdapterPruningHook``): stage, name, parameters (count, share of the
model's), forward FLOPs ``f_i`` (mmengine's ``FlopAnalyzer``, as mmdet's
``get_flops.py``, on the exported form and the first val image; share of the
adapted model's), the quadratic-to-primary term norm ratio on the val set and, with the
ablation scorer, the val metric drop when that adapter alone is off (``U = 0``).
Adapters rank by importance (the drop, or the norm ratio) per FLOP.

Scorers. ``ablation`` (the default) is exact: it measures what switching an
adapter off costs in the val metric, the quantity a pruning budget trades
against, at one val pass per adapter (plus one). ``norm`` is cheap, one val
pass, but a proxy: a large quadratic term may be redundant and a small one decisive.
The study's pruning part (``docs/study.md``) measured the difference: with a
quarter of task (b)'s adapters off, -0.3 points by the ablation order and
-4.9 by the norm order (which removed more FLOPs: 1.24x against 1.36x left)
and -16.6 at random, so the exact scorer is the default. On a large val
set, restrict it with ``--cfg-options val_dataloader.dataset.indices=N`` or
use ``--scorer norm``.

Pruning. ``--prune-to-flops R`` switches adapters off, least important per
FLOP first, until the forward FLOPs ratio ``(F_0 + sum of the kept f_i) /
F_0`` is at most ``R`` (>= 1.0; 1.0 switches all off); ``--prune-fraction
F`` switches off the ``ceil(F * N)`` least important of the ``N`` adapters.
The pruned checkpoint (``U = 0`` there, every training key kept, so it loads
strictly into the training config) is scored on the val set and its FLOPs
counted again; ``tools/export.py`` then gives a model whose pruned layers
skip their quadratic term (``export_for_inference(drop_zero_adapters=True)`` makes
them plain layers).

Writes to ``--out-dir`` (default ``<work dir>/adapter_importance``):
``adapter_importance.{md,csv,json,png}`` and, when pruning,
``<checkpoint name>_pruned.pth`` (written atomically: a temporary file
renamed into place). The metric is the val evaluator's first (``--metric``
to choose), taken as higher-is-better. One process (no launcher).
"""

import argparse
import csv
import json
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner.checkpoint import (  # noqa: E402
    _load_checkpoint,
    get_state_dict,
    save_checkpoint,
    weights_to_cpu,
)

import quadra_mm  # noqa: E402,F401  (registers modules; atomic checkpoint writes)
from quadra_mm.adapters import quadratic_layers  # noqa: E402
from quadra_mm.adapters.pruning import switch_off  # noqa: E402
from quadra_mm.cli import build_runner, load_config  # noqa: E402
from quadra_mm.importance import (  # noqa: E402
    SCORERS,
    Evaluation,
    adapters_to_prune,
    count_flops,
    metric_of,
    pruning_rule,
    score_adapters,
)
from quadra_mm.models import load_trained_checkpoint  # noqa: E402
from quadra_mm.ops import is_adapter_param_name  # noqa: E402

VAL_KEYS = ('val_dataloader', 'val_evaluator', 'val_cfg')
COLUMNS = (
    'rank',
    'stage',
    'adapter',
    'params',
    'param_share_pct',
    'flops',
    'flop_share_pct',
    'norm_ratio',
    'metric_drop',
    'importance',
    'importance_per_flop_pct',
    'pruned',
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Importance of the quadratic adapters per FLOP, and pruning to a FLOPs budget'
    )
    parser.add_argument('config', help='training config (with a val set)')
    parser.add_argument(
        'checkpoint', help='trained checkpoint (full or written by AdapterCheckpointHook)'
    )
    parser.add_argument('--work-dir', help="the runner's log dir")
    parser.add_argument(
        '--out-dir',
        help='where the tables, plot and pruned '
        'checkpoint go (default <work dir>/adapter_importance)',
    )
    parser.add_argument(
        '--scorer',
        choices=SCORERS,
        default='ablation',
        help='ablation: metric drop per adapter (one val pass '
        'each, exact; default); norm: quadratic-to-primary term norm '
        'ratio (one val pass)',
    )
    parser.add_argument('--metric', help="val metric to score by (default: the evaluator's first)")
    prune = parser.add_mutually_exclusive_group()
    prune.add_argument(
        '--prune-to-flops',
        type=float,
        metavar='R',
        help="switch off adapters until forward FLOPs <= R x the first-order model's (R >= 1.0)",
    )
    prune.add_argument(
        '--prune-fraction',
        type=float,
        metavar='F',
        help='switch off this fraction of the adapters, in [0, 1]',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs',
    )
    parser.set_defaults(launcher='none')  # for quadra_mm.cli.load_config
    args = parser.parse_args(argv)
    if args.prune_to_flops is not None and not args.prune_to_flops >= 1.0:
        parser.error(
            f'--prune-to-flops {args.prune_to_flops}: the budget is '
            'a ratio to the first-order FLOPs and must be >= 1.0'
        )
    if args.prune_fraction is not None and not 0.0 <= args.prune_fraction <= 1.0:
        parser.error(
            f'--prune-fraction {args.prune_fraction}: a fraction of the adapters must be in [0, 1]'
        )
    return args


def check_config(cfg: Config, source: str) -> None:
    """The tool scores on the val set: every val key must be there."""
    missing = [key for key in VAL_KEYS if cfg.get(key) is None]
    if missing:
        raise SystemExit(
            f'{source}: no {", ".join(missing)} in the config; '
            'adapter_importance scores adapters on the val set '
            f'and needs {", ".join(VAL_KEYS)}'
        )


def check_checkpoint(path: str) -> None:
    """A checkpoint of a QNv2 model holds adapter keys (``...quad_u.weight``)."""
    if not osp.isfile(path):
        raise SystemExit(f'checkpoint not found: {path}')
    checkpoint = _load_checkpoint(path, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    if not any(is_adapter_param_name(key) for key in state_dict):
        raise SystemExit(
            f'checkpoint {path} has no quadratic adapter keys '
            '(...quad_a/quad_b/quad_u.weight): it is not a trained QNv2 '
            'model (a first-order checkpoint?), nothing to score'
        )


def write_tables(rows: List[dict], summary: dict, out_dir: str) -> None:
    with open(osp.join(out_dir, 'adapter_importance.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in COLUMNS})
    with open(osp.join(out_dir, 'adapter_importance.json'), 'w') as f:
        json.dump(dict(summary, adapters=rows), f, indent=1)

    def fmt(value) -> str:
        if value is None:
            return ''
        if isinstance(value, bool):
            return 'yes' if value else ''
        if isinstance(value, float):
            return f'{value:.4g}'
        return str(value)

    lines = [
        f'# Adapter importance: {summary["config"]}',
        '',
        f'checkpoint `{summary["checkpoint"]}`, scorer `{summary["scorer"]}`, '
        f'val metric `{summary["metric"]}` = {summary["val_metric"]:.4g}, '
        f'{summary["val_images"]} val images; forward FLOPs '
        f'{summary["adapted_flops"]:,} vs first-order {summary["first_order_flops"]:,} '
        f'({summary["flops_ratio"]:.4f}x) at input {summary["input_shape"]}.',
        '',
    ]
    pruned = summary.get('pruned')
    if pruned:
        lines += [
            f'Pruned ({pruned["rule"]}): {len(pruned["adapters"])} of '
            f'{len(rows)} adapters off, forward FLOPs ratio '
            f'{pruned["flops_ratio"]:.4f}x, val `{summary["metric"]}` = '
            f'{pruned["val_metric"]:.4g}; `{pruned["checkpoint"]}`.',
            '',
        ]
    lines += ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    lines += ['| ' + ' | '.join(fmt(row[key]) for key in COLUMNS) + ' |' for row in rows]
    with open(osp.join(out_dir, 'adapter_importance.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def plot(rows: List[dict], summary: dict, path: str) -> None:
    """Importance against FLOP share, a colour per stage; pruned adapters hollow."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    stages = sorted({row['stage'] for row in rows}, key=str)
    colours = plt.get_cmap('tab10')
    for index, stage in enumerate(stages):
        for pruned in (False, True):
            points = [r for r in rows if r['stage'] == stage and r['pruned'] == pruned]
            if not points:
                continue
            colour = colours(index % 10)
            ax.scatter(
                [r['flop_share_pct'] for r in points],
                [r['importance'] for r in points],
                facecolors='none' if pruned else colour,
                edgecolors=colour,
                label=f'backbone stage {stage}' + (' (pruned)' if pruned else ''),
            )
    ax.set_xlabel('FLOP share of the adapted model (%)')
    ax.set_ylabel(
        f'metric drop ({summary["metric"]})'
        if summary['scorer'] == 'ablation'
        else 'quadratic / primary term norm ratio'
    )
    ax.set_title(f'adapter importance ({summary["scorer"]})')
    ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args)
    check_config(cfg, args.config)
    check_checkpoint(args.checkpoint)
    cfg.load_from, cfg.resume = None, False  # loaded below, trained-only too
    out_dir = args.out_dir or osp.join(cfg.work_dir, 'adapter_importance')

    runner = build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    layers = dict(quadratic_layers(model))
    if not layers:
        raise SystemExit(
            f'{args.config}: the model has no quadratic layers (no QuadraNetV2/QuadraNet backbone)'
        )
    checkpoint = load_trained_checkpoint(model, args.checkpoint)
    evaluation = Evaluation(runner.val_loop, model)
    pruning = args.prune_to_flops is not None or args.prune_fraction is not None
    evaluation.start(1 + (len(layers) if args.scorer == 'ablation' else 0) + pruning)
    try:
        scores = score_adapters(evaluation, layers, args.scorer, args.metric)
    except KeyError as error:  # the evaluator has no such metric
        raise SystemExit(f'{args.config}: {error.args[0]}') from None
    rows, key, val_metric = scores.rows, scores.metric, scores.val_metric
    first_order, adapted = scores.first_order_flops, scores.adapted_flops
    exported, (inputs, data_samples) = scores.exported, scores.flop_inputs
    exported_layers = dict(quadratic_layers(exported))

    summary = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        scorer=args.scorer,
        metric=key,
        val_metric=val_metric,
        val_images=len(evaluation.dataloader.dataset),
        input_shape=list(inputs.shape),
        first_order_flops=first_order,
        adapted_flops=adapted,
        flops_ratio=adapted / first_order,
    )
    if pruning:
        rule = pruning_rule(args.prune_to_flops, args.prune_fraction)
        names = adapters_to_prune(scores, args.prune_to_flops, args.prune_fraction)
        switch_off(layers[name] for name in names)
        switch_off(exported_layers[name] for name in names)
        pruned_flops = count_flops(exported, inputs, data_samples)['']
        pruned_metric = metric_of(evaluation.run(), key, 'pruned model')
        for row in rows:
            row['pruned'] = row['adapter'] in names
        os.makedirs(out_dir, exist_ok=True)
        stem = osp.splitext(osp.basename(args.checkpoint))[0]
        path = osp.join(out_dir, f'{stem}_pruned.pth')
        summary['pruned'] = dict(
            rule=rule,
            adapters=names,
            flops=pruned_flops,
            flops_ratio=pruned_flops / first_order,
            val_metric=pruned_metric,
            checkpoint=path,
        )
        meta = {
            k: v
            for k, v in (checkpoint.get('meta') or {}).items()
            if k in ('dataset_meta', 'epoch', 'iter', 'seed')
        }
        meta['pruned_from'] = osp.abspath(args.checkpoint)
        meta['pruned_adapters'] = list(names)
        save_checkpoint(dict(meta=meta, state_dict=weights_to_cpu(get_state_dict(model))), path)

    os.makedirs(out_dir, exist_ok=True)
    write_tables(rows, summary, out_dir)
    plot(rows, summary, osp.join(out_dir, 'adapter_importance.png'))
    print(
        f'\n{len(rows)} adapters scored ({args.scorer}), val {key} = '
        f'{val_metric:.4g}, forward FLOPs {adapted / first_order:.4f}x '
        f'first-order; tables and plot in {out_dir}'
    )
    if pruning:
        pruned = summary['pruned']
        print(
            f'pruned {len(pruned["adapters"])} of {len(rows)} adapters '
            f'({rule}): forward FLOPs {pruned["flops_ratio"]:.4f}x '
            f'first-order, val {key} = {pruned["val_metric"]:.4g}; '
            f'{pruned["checkpoint"]}'
        )
    return summary


if __name__ == '__main__':
    main()
