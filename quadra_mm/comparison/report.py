"""The comparison's outputs: ``results.json`` (every run), ``report.md`` (arm x
metric mean ± std over seeds, paired difference against the reference arm with
its standard error and verdict, parameters, FLOPs and training time) and one
plot (the main metric against training time)."""

import math
import os.path as osp
from typing import Dict, List

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from .cache import write_json, write_text  # noqa: E402
from .executor import mmss  # noqa: E402
from .statistics import VERDICT_RULE, mean_std, paired_difference, verdict  # noqa: E402

__all__ = ['write_outputs', 'render_report', 'plot_metric_vs_time']

PLOT = 'comparison.png'


def _digits(results: dict) -> int:
    """3 decimals for metrics in [0, 1] (mAP), 1 for percentages."""
    values = [
        abs(run['test'][m])
        for arm in results['arms'].values()
        for run in arm['runs']
        for m in results['reported']
    ]
    return 3 if values and max(values) <= 1.0 else 1


def _per_seed(arm: dict, metric: str) -> List[dict]:
    return [dict(seed=run['seed'], v=run['test'][metric]) for run in arm['runs']]


def _cell(values: List[float], digits: int) -> str:
    mean, std = mean_std(values)
    return f'{mean:.{digits}f}' + ('' if math.isnan(std) else f' ± {std:.{digits}f}')


def _ratio(value: float, reference: float) -> str:
    return f'{value / reference:.3f}×' if reference else '—'


def render_report(results: dict) -> str:
    """``report.md`` from ``results`` (what :func:`~.protocol.run_comparison`
    returns)."""
    digits = _digits(results)
    arms: Dict[str, dict] = results['arms']
    reference = results['reference']
    ref = arms[reference]['runs']
    ref_params = ref[0]['params']
    ref_flops = ref[0]['flops']
    ref_seconds = mean_std([r['seconds'] for r in ref])[0]
    metric = results['metric']
    lines = [
        '# Adaptation comparison',
        '',
        f'`{results["command"]}`' if results.get('command') else f'Config `{results["config"]}`',
        '',
        f'Config `{results["config"]}`; arms {", ".join(f"`{a}`" for a in arms)}; seeds '
        f'{results["seeds"]} (each arm the same data, schedule '
        f'{results["schedule"]} and seeds); lr '
        + (
            f'chosen per arm from {results["lrs"]} by the last val `{metric}` of seed '
            f'{results["seeds"][0]}'
            if results['lrs'] and len(results['lrs']) > 1
            else "the config's"
            if not results['lrs']
            else f'{results["lrs"][0]:g}'
        )
        + f'; every seed tested once on the test split; launcher '
        f'{results["launch"]["launcher"]} ({results["launch"]["nproc"]} process(es) per run), '
        f'{results["workers"]} run(s) at a time; {results["machine"]}; finished '
        f'{results["finished"]} in {mmss(results["seconds"])} ({results["trained"]} runs '
        f'trained, {results["cached"]} from the cache). Mean ± sample std over seeds.',
        '',
        '| arm | lr | '
        + ' | '.join(f'test `{m}`' for m in results['reported'])
        + ' | params | trained params | FLOPs | training time | step |',
        '|---' * (len(results['reported']) + 7) + '|',
    ]
    for name, arm in arms.items():
        runs = arm['runs']
        seconds = mean_std([r['seconds'] for r in runs])[0]
        lr = 'config' if arm['lr'] is None else f'{arm["lr"]:g}'
        lines.append(
            f'| {name} | {lr} | '
            + ' | '.join(_cell([r['test'][m] for r in runs], digits) for m in results['reported'])
            + f' | {runs[0]["params"] / 1e6:.2f} M ({_ratio(runs[0]["params"], ref_params)})'
            f' | {runs[0]["trained_params"] / 1e6:.2f} M'
            f' | {_ratio(runs[0]["flops"], ref_flops)}'
            f' | {seconds:.0f} s ({_ratio(seconds, ref_seconds)})'
            f' | {1000 * mean_std([r["step_time"] for r in runs])[0]:.0f} ms |'
        )
    lines += [
        '',
        f'Ratios are against the reference arm `{reference}`; FLOPs: the forward '
        "of the trained model on the first test image (mmengine's counter, as "
        '`get_flops.py`); trained params: those training changed; training time: '
        "the Runner's `train()` per run (validation included); step: one training "
        'step (forward, backward, optimizer).',
        '',
        f'## Against `{reference}`',
        '',
        f'Verdict rule ({", ".join(f"`{m}`" for m in results["reported"])}): ' + VERDICT_RULE + '.',
        '',
        '| arm | '
        + ' | '.join(f'`{m}` d (SE)' for m in results['reported'])
        + f' | verdict on `{metric}` |',
        '|---' * (len(results['reported']) + 2) + '|',
    ]
    for name, arm in arms.items():
        if name == reference:
            continue
        cells = []
        for m in results['reported']:
            d = paired_difference(_per_seed(arm, m), _per_seed(arms[reference], m), 'v')
            cells.append(f'{d["mean"]:+.{digits}f} ({d["se"]:.{digits}f})')
        lines.append(
            f'| {name} | '
            + ' | '.join(cells)
            + ' | '
            + verdict(_per_seed(arm, metric), _per_seed(arms[reference], metric), 'v', digits)
            + ' |'
        )
    if any(arm.get('sweep') for arm in arms.values()):
        lrs = results['lrs']
        lines += [
            '',
            f'## lr sweep (val `{metric}`, seed {results["seeds"][0]})',
            '',
            '| arm | ' + ' | '.join(f'{lr:g}' for lr in lrs) + ' | chosen |',
            '|---' * (len(lrs) + 2) + '|',
        ]
        for name, arm in arms.items():
            lines.append(
                f'| {name} | '
                + ' | '.join(f'{arm["sweep"][f"{lr:g}"]:.{digits}f}' for lr in lrs)
                + f' | {arm["lr"]:g} |'
            )
    lines += ['', '## Arms', '']
    lines += [f'- `{name}`: {arm["describe"]}' for name, arm in arms.items()]
    lines += ['', f'![{metric} against training time]({PLOT})', '']
    return '\n'.join(lines)


def plot_metric_vs_time(results: dict, path: str) -> None:
    """The main test metric (mean ± std over seeds) against the mean training
    time of a run, one point per arm."""
    metric = results['metric']
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, arm in results['arms'].items():
        values = [r['test'][metric] for r in arm['runs']]
        seconds = [r['seconds'] for r in arm['runs']]
        mean, std = mean_std(values)
        ax.errorbar(
            mean_std(seconds)[0],
            mean,
            yerr=0 if math.isnan(std) else std,
            fmt='o',
            capsize=3,
            label=name,
        )
    ax.set_xlabel('training time per run (s)')
    ax.set_ylabel(f'test {metric}')
    ax.set_title(f'{len(results["seeds"])} seeds, mean ± std')
    ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(results: dict, out_dir: str) -> str:
    """``results.json``, ``report.md`` and the plot in ``out_dir``; the
    report's path."""
    write_json(osp.join(out_dir, 'results.json'), results)
    plot_metric_vs_time(results, osp.join(out_dir, PLOT))
    path = osp.join(out_dir, 'report.md')
    write_text(path, render_report(results))
    return path
