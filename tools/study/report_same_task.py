"""The report's same-task section (:mod:`.same_task`): each arm's cost in
steps and CPU seconds with pretraining included, the table, the lr sweep,
the verdicts (the paper's cost claim among them) and the paper's Figure 2 in
this setting."""

import math
import statistics
import string
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from quadra_mm.comparison.statistics import fmt, mean_std, verdict  # noqa: E402

from .report_curves import curve_stats  # noqa: E402
from .report_template import paragraph  # noqa: E402

__all__ = ['SAME_TASK_LABELS', 'plot_same_task', 'same_task_section']


SAME_TASK_LABELS = {
    'pretrain': 'first-order, pretrained (P steps)',
    'first-order-continued': 'first-order, continued (P + E)',
    'qnv2-stages': 'QNv2 stage training (P + E)',
    'qnv2-adapters': 'QNv2 adapters only (P + E)',
    'lora': "LoRA (interaction='linear'), adapters only (P + E)",
    'scratch': 'QuadraNet from scratch',
}


def _mean(values) -> float:
    return statistics.fmean(float(v) for v in values)


def _same_task_costs(part: dict) -> Dict[str, Tuple[int, float]]:
    """(training steps, CPU seconds) of each row of the same-task table,
    pretraining included: steps x the run's mean step time (one torch
    thread per worker, so a worker's wall time is its CPU time)."""
    s = part['scale']
    pre_steps = s['pretrain_iters']
    pre_cost = pre_steps * _mean(r['step_time'] for r in part['pretrain'])
    costs = {'pretrain': (pre_steps, pre_cost)}
    for name, arm in part['arms'].items():
        costs[name] = (
            pre_steps + s['extra_iters'],
            pre_cost + s['extra_iters'] * _mean(r['step_time'] for r in arm['runs']),
        )
    scratch = part['scratch']
    costs['scratch'] = (
        scratch['iters'],
        scratch['iters'] * _mean(r['step_time'] for r in scratch['runs']),
    )
    return costs


def _same_task_rows(part: dict) -> Dict[str, dict]:
    rows = {'pretrain': dict(lr=part['pretrain_lr'], runs=part['pretrain'])}
    rows.update(part['arms'])
    rows['scratch'] = part['scratch']
    return rows


def _scratch_reach(part: dict) -> List[Tuple[int, Optional[int]]]:
    """(seed, the first val step of QuadraNet from scratch at or above that
    seed's QNv2 stage-training final val accuracy, None if never)."""
    target = {r['seed']: r['final'] for r in part['arms']['qnv2-stages']['runs']}
    reach = []
    for run in part['scratch']['runs']:
        hits = [step for step, value in run['curve'] if value >= target[run['seed']]]
        reach.append((run['seed'], hits[0] if hits else None))
    return reach


def plot_same_task(part: dict, path: str) -> None:
    """The paper's Figure 2 in this setting: val accuracy against training
    steps (left) and test accuracy against training cost (right)."""
    s = part['scale']
    rows, costs = _same_task_rows(part), _same_task_costs(part)
    pre_final = _mean(r['final'] for r in part['pretrain'])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for name, row in rows.items():
        steps, mean, std = curve_stats(row['runs'])
        if name in part['arms']:  # they start where the pretraining ended
            steps = np.concatenate([[0], steps]) + s['pretrain_iters']
            mean = np.concatenate([[pre_final], mean])
            std = np.concatenate([[0.0], std])
        (line,) = left.plot(steps, mean, marker='o', ms=2.5, label=SAME_TASK_LABELS[name])
        left.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        test_mean, test_std = mean_std([r['test'] for r in row['runs']])
        right.errorbar(
            costs[name][1],
            test_mean,
            yerr=0 if math.isnan(test_std) else test_std,
            marker='o',
            capsize=3,
            color=line.get_color(),
            label=SAME_TASK_LABELS[name],
        )
    left.set_xlabel('training steps (pretraining included)')
    left.set_ylabel('val top-1 (%)')
    finals = [r['final'] for row in rows.values() for r in row['runs']]
    left.set_ylim(min(finals) - 4, max(finals) + 1.5)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc='lower right')
    right.set_xlabel('training cost, CPU seconds (pretraining included)')
    right.set_ylabel('test top-1 (%)')
    right.grid(alpha=0.3)
    fig.suptitle(
        f'Same task (10 classes): accuracy vs training cost, mean ± '
        f'std over {len(part["pretrain"])} seeds',
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _same_task_claims(part: dict, parts: Dict[str, string.Template]) -> List[Tuple[str, str]]:
    arms, s = part['arms'], part['scale']
    claims = [
        (parts[name].substitute(), verdict(arms[runs]['runs'], control))
        for name, runs, control in (
            (
                'claim_same_stages_vs_continued',
                'qnv2-stages',
                arms['first-order-continued']['runs'],
            ),
            ('claim_same_stages_vs_pretrained', 'qnv2-stages', part['pretrain']),
            ('claim_same_adapters_vs_lora', 'qnv2-adapters', arms['lora']['runs']),
            ('claim_same_stages_vs_scratch', 'qnv2-stages', part['scratch']['runs']),
        )
    ]
    # The paper's cost claim: the adaptation's extra steps over the steps the
    # scratch network needs to reach the adapted accuracy (a bound when it
    # never does within its run).
    fractions = [
        (s['extra_iters'] / (step or part['scratch']['iters']), step is None)
        for _, step in _scratch_reach(part)
    ]
    shown = ', '.join(f'{"< " if bound else ""}{f:.1%}' for f, bound in fractions)
    if all(f <= 0.1 for f, _ in fractions):
        text = parts['verdict_same_cost_supported'].substitute(fractions=shown)
    elif _mean(f for f, _ in fractions) > 0.1:
        text = parts['verdict_same_cost_not_supported'].substitute(fractions=shown)
    else:
        text = parts['verdict_same_cost_inconclusive'].substitute(fractions=shown)
    claims.append((parts['claim_same_cost'].substitute(), text))
    return claims


def same_task_section(results: dict, parts: Dict[str, string.Template]) -> str:
    """The report's same-task section (its 'not run' text without it)."""
    part = results.get('same_task')
    if part is None:
        return parts['same_task_not_run'].substitute()
    s = part['scale']
    rows, costs = _same_task_rows(part), _same_task_costs(part)
    table = [
        '| arm | lr (chosen on val) | training steps | CPU s (one '
        'thread) | val top-1 | **test top-1** | trainable params (end) |',
        '|---|---|---|---|---|---|---|',
    ]
    for name, row in rows.items():
        runs = row['runs']
        table.append(
            f'| {SAME_TASK_LABELS[name]} | {row["lr"]:g} | {costs[name][0]:,} | '
            f'{costs[name][1]:,.0f} | {fmt([r["final"] for r in runs])} | '
            f'**{fmt([r["test"] for r in runs])}** | {runs[0]["trainable"]:,} |'
        )
    sweep = [
        '| arm | ' + ' | '.join(f'lr {lr:g}' for lr in s['lrs']) + ' |',
        '|---|' + '---|' * len(s['lrs']),
    ]
    for name, arm in part['arms'].items():
        sweep.append(
            f'| {SAME_TASK_LABELS[name]} | '
            + ' | '.join(
                f'**{arm["sweep"][f"{lr:g}"]:.1f}**'
                if lr == arm['lr']
                else f'{arm["sweep"][f"{lr:g}"]:.1f}'
                for lr in s['lrs']
            )
            + ' |'
        )
    edge = [
        SAME_TASK_LABELS[name]
        for name, arm in part['arms'].items()
        if arm['lr'] in (min(s['lrs']), max(s['lrs']))
    ]
    reach = _scratch_reach(part)
    pre_steps = s['pretrain_iters']
    scratch_step = _mean(r['step_time'] for r in part['scratch']['runs'])
    reached = [(seed, step) for seed, step in reach if step is not None]
    reach_text = '; '.join(
        f'seed {seed}: '
        + (
            f'step {step} ({step / (pre_steps + s["extra_iters"]):.2f}'
            f' of P + E, {step * scratch_step:,.0f} CPU s)'
            if step is not None
            else f'not within {part["scratch"]["iters"]} steps'
        )
        for seed, step in reach
    )
    pre_curves = [dict(r['curve']) for r in part['pretrain']]
    half = [step for step, _ in part['pretrain'][0]['curve'] if step >= pre_steps // 2][0]
    late_gain = _mean(c[pre_steps] - c[half] for c in pre_curves)
    values = dict(
        width=s['width'],
        width8=8 * s['width'],
        train_per_class=s['train_per_class'],
        batch=s['batch'],
        val_per_class=results['scale']['val_per_class'],
        test_per_class=s['test_per_class'] or 1000,
        pretrain_iters=pre_steps,
        extra_iters=s['extra_iters'],
        extra_pct=f'{s["extra_iters"] / pre_steps:.0%}',
        scratch_extras=s['scratch_extras'],
        scratch_iters=part['scratch']['iters'],
        scratch_val_interval=s['scratch_val_interval'],
        pretrain_val_interval=s['pretrain_val_interval'],
        val_interval=s['val_interval'],
        lrs=list(s['lrs']),
        pretrain_lr=f'{part["pretrain_lr"]:g}',
        part_minutes=f'{part["seconds"] / 60:.0f}',
        table='\n'.join(table),
        sweep_table='\n'.join(sweep),
        claims='\n'.join(f'| {claim} | {text} |' for claim, text in _same_task_claims(part, parts)),
        reach=reach_text,
        reached=len(reached),
        seeds=len(reach),
        half=half,
        late_gain=f'{late_gain:+.1f}',
        edge_note=paragraph(
            parts['same_task_edge_note'].substitute(
                edge_count=len(edge), arm_count=len(part['arms']), edge_arms=', '.join(edge)
            )
        )
        if edge
        else '',
    )
    return parts['same_task_run'].substitute(values)
