"""``docs/study.md`` and its plots from the results of ``tools/run_study.py``:
the prose is the Markdown template ``report_template.md`` beside this file,
the numbers and tables are computed here.

Every number in the report is a mean +- sample standard deviation over the
seeds; every claim gets a verdict from the paired per-seed differences
(the comparison tool's rule, :func:`quadra_mm.comparison.statistics.verdict`).
"""

import json
import math
import os
import os.path as osp
import re
import statistics
import string
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from quadra_mm.comparison.statistics import fmt, mean_std, verdict  # noqa: E402
from quadra_mm.datasets.fashion_mnist_shift import apply_shift  # noqa: E402

from .report_pruning import plot_pruning, pruning_section  # noqa: E402

__all__ = ['write_report', 'render_report', 'headline_table']

# The prose of the report, with ${placeholders} for what is computed here.
TEMPLATE = osp.join(osp.dirname(osp.abspath(__file__)), 'report_template.md')
_PART_MARKER = re.compile(r'^<!-- part: (\w+) -->\n', re.M)

ARM_LABELS = {
    'linear-probe': 'linear probe',
    'full-ft': 'full first-order fine-tuning',
    'lora': "LoRA (interaction='linear'), adapters only",
    'qnv2-adapters': 'QNv2 adapters only (stage 1)',
    'qnv2-stages': 'QNv2 stage training (1 -> 2)',
    'quadranet-scratch': 'QuadraNet from scratch',
    'first-order-scratch': 'first-order from scratch',
}
TASK_LABELS = {
    'heldout': '(a) held-out classes',
    'shift': '(b) non-linear shift (solarise + swirl)',
}
FASHION_CLASSES = (
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
)


def _curve_stats(runs: List[dict]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = [s for s, _ in runs[0]['curve']]
    values = np.array([[v for _, v in r['curve']] for r in runs], dtype=float)
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(steps))
    return np.array(steps), values.mean(axis=0), std


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------
def _read_idx_images(data_dir: str, count: int) -> Tuple[np.ndarray, np.ndarray]:
    images = np.fromfile(
        osp.join(data_dir, 't10k-images-idx3-ubyte'), dtype=np.uint8, offset=16
    ).reshape(-1, 28, 28)
    labels = np.fromfile(osp.join(data_dir, 't10k-labels-idx1-ubyte'), dtype=np.uint8, offset=8)
    picks = [int(np.flatnonzero(labels == c)[0]) for c in range(count)]
    return images[picks], labels[picks]


def plot_shift_examples(data_dir: str, path: str) -> None:
    images, labels = _read_idx_images(data_dir, 5)
    shifted = apply_shift(images, 'solarise_swirl')
    fig, axes = plt.subplots(2, 5, figsize=(7.5, 3.4))
    for col, (img, out, label) in enumerate(zip(images, shifted, labels)):
        for row, pic in enumerate((img, out)):
            ax = axes[row, col]
            ax.imshow(pic, cmap='gray', vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(FASHION_CLASSES[label], fontsize=9)
    axes[0, 0].set_ylabel('source')
    axes[1, 0].set_ylabel('shifted')
    fig.suptitle('Task (b): solarise (v -> sin(0.9 pi sqrt v)) + swirl', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(results: dict, path: str) -> None:
    tasks = results['tasks']
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, (task, arms) in zip(axes[0], tasks.items()):
        for name, arm in arms.items():
            steps, mean, std = _curve_stats(arm['runs'])
            (line,) = ax.plot(
                steps, mean, marker='o', ms=3, label=f'{ARM_LABELS[name]} (lr {arm["lr"]:g})'
            )
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.18)
        ax.set_title(TASK_LABELS[task])
        ax.set_xlabel('iteration')
        ax.set_ylabel('val top-1 (%)')
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc='lower right')
    fig.suptitle(
        f'Validation accuracy vs iteration, mean ± std over {len(results["scale"]["seeds"])} seeds',
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bars(results: dict, path: str) -> None:
    tasks = results['tasks']
    names = list(next(iter(tasks.values())))
    width = 0.8 / len(tasks)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(names))
    for i, (task, arms) in enumerate(tasks.items()):
        stats = [mean_std([r['test'] for r in arms[n]['runs']]) for n in names]
        ax.bar(
            x + (i - (len(tasks) - 1) / 2) * width,
            [m for m, _ in stats],
            width,
            yerr=[0 if math.isnan(s) else s for _, s in stats],
            capsize=3,
            label=TASK_LABELS[task],
        )
    ax.set_xticks(x)
    ax.set_xticklabels([ARM_LABELS[n] for n in names], rotation=25, ha='right', fontsize=8)
    ax.set_ylabel('test top-1 (%)')
    lows = [r['test'] for arms in tasks.values() for a in arms.values() for r in a['runs']]
    ax.set_ylim(max(0.0, min(lows) - 10), 100)
    ax.grid(axis='y', alpha=0.3)
    ax.legend(fontsize=8, loc='upper left', framealpha=0.95)
    ax.set_title('Final test accuracy per arm, mean ± std over seeds', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_efficiency(results: dict, target: float, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, runs in (
        ('QuadraNet from scratch', results['efficiency']['runs']),
        ('QNv2 stage training', results['tasks']['shift']['qnv2-stages']['runs']),
    ):
        steps, mean, std = _curve_stats(runs)
        (line,) = ax.plot(steps, mean, marker='o', ms=3, label=label)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.18)
    ax.axhline(target, color='gray', ls='--', lw=1, label=f'QNv2 final val ({target:.1f} %)')
    ax.set_xlabel('iteration on the target task')
    ax.set_ylabel('val top-1 (%)')
    ax.set_title('Task (b): adaptation vs high-order from scratch', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------
def _arm_step_ratios(ratios: Dict[str, float]) -> Dict[str, float]:
    """Step-time ratio per arm from the side-by-side measurement: stage
    training is half stage 1 (adapters), half stage 2 (everything); the
    from-scratch arms train everything of their network."""
    joint = ratios['qnv2 stage 2 (everything trains)']
    return {
        'linear-probe': ratios['linear-probe'],
        'full-ft': 1.0,
        'lora': ratios['lora'],
        'qnv2-adapters': ratios['qnv2-adapters'],
        'qnv2-stages': (ratios['qnv2-adapters'] + joint) / 2,
        'quadranet-scratch': joint,
        'first-order-scratch': 1.0,
    }


def _arm_table(task: str, arms: Dict[str, dict], ratios: Optional[Dict[str, float]]) -> List[str]:
    steps = _arm_step_ratios(ratios) if ratios else {}
    lines = [
        '| arm | lr (chosen on val) | val top-1 | **test top-1** | '
        'trainable params (end) | train step vs full FT |',
        '|---|---|---|---|---|---|',
    ]
    for name, arm in arms.items():
        runs = arm['runs']
        step = f'{steps[name]:.2f}×' if name in steps else '-'
        lines.append(
            f'| {ARM_LABELS[name]} | {arm["lr"]:g} | '
            f'{fmt([r["final"] for r in runs])} | **{fmt([r["test"] for r in runs])}** | '
            f'{runs[0]["trainable"]:,} | {step} |'
        )
    return lines


def _sweep_table(tasks: dict) -> List[str]:
    lrs = list(next(iter(next(iter(tasks.values())).values()))['sweep'])
    lines = [
        '| task | arm | ' + ' | '.join(f'lr {lr}' for lr in lrs) + ' |',
        '|---|---|' + '---|' * len(lrs),
    ]
    for task, arms in tasks.items():
        for name, arm in arms.items():
            cells = [
                f'**{arm["sweep"][lr]:.1f}**'
                if float(lr) == arm['lr']
                else f'{arm["sweep"][lr]:.1f}'
                for lr in lrs
            ]
            lines.append(f'| {task} | {ARM_LABELS[name]} | ' + ' | '.join(cells) + ' |')
    return lines


def _first_reach(runs: List[dict], target: float) -> Optional[int]:
    steps, mean, _ = _curve_stats(runs)
    hits = [int(s) for s, m in zip(steps, mean) if m >= target]
    return hits[0] if hits else None


def training_seconds(results: dict) -> float:
    """Sum of the recorded training times of every run of the study."""
    total = sum(r['seconds'] for r in results['source'].values())
    for arms in results['tasks'].values():
        for arm in arms.values():
            total += arm.get('sweep_seconds', 0) + sum(r['seconds'] for r in arm['runs'][1:])
    groups = [*results['ablation'].values()]
    if 'efficiency' in results:
        groups.append(results['efficiency'])
    for group in groups:
        total += sum(r['seconds'] for r in group['runs'])
    total += sum(
        r['seconds'] for runs in results['detection'].get('arms', {}).values() for r in runs
    )
    if 'same_task' in results:
        part = results['same_task']
        total += sum(r['seconds'] for r in part['pretrain'])
        total += sum(r['seconds'] for r in part['scratch']['runs'])
        total += sum(
            arm['sweep_seconds'] + sum(r['seconds'] for r in arm['runs'][1:])
            for arm in part['arms'].values()
        )
    return total


def headline_table(results: dict) -> List[str]:
    """Test top-1 of every arm on both tasks (the README shows it too)."""
    tasks = results['tasks']
    lines = [
        '| arm (same budget, data and lr sweep) | '
        + ' | '.join(f'{TASK_LABELS[t]}: test top-1 %' for t in tasks)
        + ' |',
        '|---|' + '---|' * len(tasks),
    ]
    for name in next(iter(tasks.values())):
        lines.append(
            f'| {ARM_LABELS[name]} | '
            + ' | '.join(fmt([r['test'] for r in tasks[t][name]['runs']]) for t in tasks)
            + ' |'
        )
    return lines


def _detection_table(det: dict) -> List[str]:
    lines = [
        '| detector | classifier top-1 after the extra epochs | bbox mAP | '
        'bbox mAP@50 | segm mAP | segm mAP@50 |',
        '|---|---|---|---|---|---|',
    ]
    for name in ('qnv2', 'first-order'):
        runs = det[name]
        lines.append(
            f'| {name} | {fmt([r["adapted_top1"] for r in runs])} | '
            f'{fmt([r["bbox_mAP"] for r in runs], 3)} | '
            f'{fmt([r["bbox_mAP_50"] for r in runs], 3)} | '
            f'{fmt([r["segm_mAP"] for r in runs], 3)} | '
            f'{fmt([r["segm_mAP_50"] for r in runs], 3)} |'
        )
    return lines


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
        steps, mean, std = _curve_stats(row['runs'])
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
        edge_note=_paragraph(
            parts['same_task_edge_note'].substitute(
                edge_count=len(edge), arm_count=len(part['arms']), edge_arms=', '.join(edge)
            )
        )
        if edge
        else '',
    )
    return parts['same_task_run'].substitute(values)


def template_parts(path: str = TEMPLATE) -> Dict[str, string.Template]:
    """The parts of the report template (see its head): name -> template."""
    with open(path, encoding='utf-8') as f:
        pieces = _PART_MARKER.split(f.read())
    return {
        name: string.Template(text.rstrip('\n')) for name, text in zip(pieces[1::2], pieces[2::2])
    }


def _claims(results: dict, parts: Dict[str, string.Template]) -> List[Tuple[str, str]]:
    """(claim, verdict) rows of the verdicts table."""
    s, tasks = results['scale'], results['tasks']
    shift = tasks['shift']
    det = results['detection'].get('arms')
    claims = []
    for task, arms in tasks.items():
        label = TASK_LABELS[task]
        for part, runs, control in (
            ('claim_adapters_vs_lora', 'qnv2-adapters', 'lora'),
            ('claim_stages_vs_full_ft', 'qnv2-stages', 'full-ft'),
            ('claim_stages_vs_scratch', 'qnv2-stages', 'quadranet-scratch'),
            ('claim_stages_vs_probe', 'qnv2-stages', 'linear-probe'),
        ):
            claims.append(
                (
                    parts[part].substitute(task=label),
                    verdict(arms[runs]['runs'], arms[control]['runs']),
                )
            )
    for ablation in results['ablation'].values():
        claims.append(
            (
                parts['claim_ablation'].substitute(ablation=ablation['describe']),
                verdict(ablation['runs'], shift['qnv2-adapters']['runs']),
            )
        )
    for key in ('bbox_mAP', 'segm_mAP') if det else ():
        claims.append(
            (
                parts['claim_detection'].substitute(metric=key.replace('_', ' ')),
                verdict(
                    [dict(r, v=100 * r[key]) for r in det['qnv2']],
                    [dict(r, v=100 * r[key]) for r in det['first-order']],
                    key='v',
                ),
            )
        )
    if 'efficiency' in results:
        reach = _first_reach(results['efficiency']['runs'], _efficiency_target(results))
        if reach is None:
            text = parts['verdict_paper_scratch_behind'].substitute(
                scratch_iters=results['efficiency']['iters'], scratch_factor=s['scratch_factor']
            )
        else:
            text = parts['verdict_paper_scratch_reached'].substitute(
                reach_ratio=f'{reach / s["iters"]:.1f}',
                saved=f'{1 - s["iters"] / reach:.0%}',
                source_images=f'{s["source_iters"] * _source_batch(s):,}',
                scratch_images=f'{reach * s["batch"]:,}',
                adapt_images=f'{s["iters"] * s["batch"]:,}',
            )
        claims.append((parts['claim_paper'].substitute(), text))
    return claims


def _source_batch(scale: dict) -> int:
    return scale.get('source_batch', 64)


def _efficiency_target(results: dict) -> float:
    """The final val top-1 of QNv2 stage training on task (b), mean over
    seeds: what QuadraNet from scratch has to reach."""
    return statistics.fmean(r['final'] for r in results['tasks']['shift']['qnv2-stages']['runs'])


def _efficiency(results: dict, parts: Dict[str, string.Template]) -> str:
    """The sentence on how long QuadraNet from scratch took to reach QNv2."""
    s, target = results['scale'], _efficiency_target(results)
    reach = _first_reach(results['efficiency']['runs'], target)
    if reach is None:
        return parts['efficiency_scratch_behind'].substitute(
            target=f'{target:.1f}',
            scratch_iters=results['efficiency']['iters'],
            scratch_factor=s['scratch_factor'],
            iters=s['iters'],
        )
    return parts['efficiency_scratch_reached'].substitute(
        target=f'{target:.1f}',
        reach=reach,
        reach_ratio=f'{reach / s["iters"]:.1f}',
        iters=s['iters'],
    )


def _wall_time(results: dict, parts: Dict[str, string.Template]) -> str:
    """How long the study took: one command, or the merged invocations."""
    runs = results.get('invocations')
    if not runs:
        return parts['wall_one'].substitute(
            wall_minutes=f'{results["seconds"] / 60:.0f}', workers=results.get('workers', 1)
        )
    described = ', '.join(
        f'{run["seconds"] / 60:.0f} min for '
        + (
            run['parts']
            if isinstance(run['parts'], str)
            else '`--parts ' + ' '.join(run['parts']) + '`'
        )
        + f' ({run["workers"]} workers, finished {run["finished"]})'
        for run in runs
    )
    return parts['wall_several'].substitute(
        count=len(runs),
        invocations=described,
        wall_minutes=f'{sum(run["seconds"] for run in runs) / 60:.0f}',
    )


def _paragraph(text: str) -> str:
    """An optional paragraph: its text and the blank line after it."""
    return text + '\n\n' if text else ''


def render_report(results: dict, template: str = TEMPLATE) -> str:
    """The text of ``study.md`` for ``results``, from the Markdown
    ``template``: numbers and tables computed here, the prose there."""
    parts = template_parts(template)
    s, tasks = results['scale'], results['tasks']
    shift = tasks['shift']
    det = results['detection'].get('arms')
    ratios = results.get('step_time_ratios', {})
    flop_ratios = results.get('resnet50_flop_ratios', {})
    values = dict(
        scale=s['name'],
        finished=results['finished'],
        machine=results['machine'],
        wall_time=_wall_time(results, parts),
        training_minutes=f'{training_seconds(results) / 60:.0f}',
        seeds=len(s['seeds']),
        iters=s['iters'],
        batch=s['batch'],
        val_interval=s['val_interval'],
        lrs=list(s['lrs']),
        sweep_seed=s['seeds'][0],
        other_seeds=list(s['seeds'][1:]),
        val_per_class=s['val_per_class'],
        test_per_class=s['test_per_class'] or 1000,
        source_per_class=s['source_per_class'],
        source_iters=s['source_iters'],
        source_batch=_source_batch(s),
        labels_per_class=s['labels_per_class'],
        adapters_lr=f'{shift["qnv2-adapters"]["lr"]:g}',
        flops_size=s.get('flops_size', 224),
        det_cls_epochs=s['det_cls_epochs'],
        det_train=s['det_train'],
        det_val=s['det_val'],
        det_img=s['det_img'],
        det_crop=s['det_crop'],
        det_iters=s['det_iters'],
    )
    values['quick_note'] = (
        '' if s['name'] == 'full' else _paragraph(parts['quick_note'].substitute())
    )
    values['headline_table'] = '\n'.join(headline_table(results))
    values['claims'] = '\n'.join(f'| {claim} | {text} |' for claim, text in _claims(results, parts))
    if 'efficiency' in results:
        efficiency = _efficiency(results, parts)
        values['efficiency_summary'] = _paragraph(
            parts['efficiency_summary'].substitute(values, efficiency=efficiency)
        )
        runs = results['efficiency']['runs']
        values['efficiency_section'] = parts['efficiency_run'].substitute(
            values,
            efficiency=efficiency,
            scratch_iters=results['efficiency']['iters'],
            scratch_lr=f'{results["efficiency"]["lr"]:g}',
            scratch_final=fmt([r['final'] for r in runs]),
        )
    else:
        values['efficiency_summary'] = ''
        values['efficiency_section'] = parts['efficiency_not_run'].substitute()
    values['arm_list'] = '\n'.join(
        f'  - *{ARM_LABELS[name]}*: {arm["describe"]}.'
        for name, arm in next(iter(tasks.values())).items()
    )
    values['task_tables'] = ''.join(
        f'\n\n### {TASK_LABELS[task]}\n\n'
        + '\n'.join(_arm_table(task, arms, results.get('step_time_ratios')))
        for task, arms in tasks.items()
    )
    values['sweep_table'] = '\n'.join(_sweep_table(tasks))
    edge = [
        f'{task} / {ARM_LABELS[name]}'
        for task, arms in tasks.items()
        for name, arm in arms.items()
        if arm['lr'] in (max(s['lrs']), min(s['lrs']))
    ]
    values['edge_note'] = _paragraph(
        parts['edge_note'].substitute(
            edge_count=len(edge),
            arm_count=sum(len(a) for a in tasks.values()),
            edge_arms=', '.join(edge) if len(edge) < 6 else 'see the table',
        )
        if edge
        else ''
    )
    rows = [
        ('linear (LoRA control), rank 8, all stages', 'lora', shift['lora']['runs']),
        (
            'quadratic, rank 8, all stages (default)',
            'qnv2-adapters',
            shift['qnv2-adapters']['runs'],
        ),
    ]
    rows += [(a['describe'], name, a['runs']) for name, a in results['ablation'].items()]
    lines = []
    for label, key, runs in rows:
        step = f'{ratios[key]:.2f}×' if key in ratios else '-'
        flops = f'{flop_ratios[key]:.3f}×' if key in flop_ratios else '-'
        lines.append(
            f'| {label} | {fmt([r["test"] for r in runs])} | '
            f'{runs[0]["adapter_params"]:,} | {step} | {flops} |'
        )
    values['ablation_rows'] = '\n'.join(lines)
    src = results['source'].values()
    values.update(
        source_val=fmt([r['final'] for r in src]),
        source_test=fmt([r['test'] for r in src]),
        source_seconds=fmt([r['seconds'] for r in src], 0),
    )
    if det:
        values['detection_section'] = parts['detection_run'].substitute(
            detection_table='\n'.join(_detection_table(det)),
            classifier_top1=fmt([r['classifier_top1'] for r in det['qnv2']]),
        )
        best_bbox = max(statistics.mean(r['bbox_mAP'] for r in runs) for runs in det.values())
        values['detection_limit'] = parts['detection_limit_run'].substitute(
            best_bbox=f'{best_bbox:.3f}'
        )
    else:
        values['detection_section'] = parts['detection_not_run'].substitute(
            note=results['detection'].get('note', '')
        )
        values['detection_limit'] = parts['detection_limit_not_run'].substitute()
    values['same_task_section'] = same_task_section(results, parts)
    values['pruning_section'] = pruning_section(results, parts)
    return parts['report'].substitute(values) + '\n'


def write_report(results: dict, out_dir: str, data_dir: str) -> str:
    """Write ``<out_dir>/study.md`` (:func:`render_report`),
    ``<out_dir>/study/*.png`` and ``<out_dir>/study/results.json``; return
    the path of the report."""
    fig_dir = osp.join(out_dir, 'study')
    os.makedirs(fig_dir, exist_ok=True)
    with open(osp.join(fig_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    plot_shift_examples(data_dir, osp.join(fig_dir, 'shift_examples.png'))
    plot_curves(results, osp.join(fig_dir, 'curves.png'))
    plot_bars(results, osp.join(fig_dir, 'final_accuracy.png'))
    if 'efficiency' in results:
        plot_efficiency(results, _efficiency_target(results), osp.join(fig_dir, 'efficiency.png'))
    if 'same_task' in results:
        plot_same_task(results['same_task'], osp.join(fig_dir, 'same_task.png'))
    if results.get('pruning'):
        plot_pruning(results, osp.join(fig_dir, 'pruning.png'))
    path = osp.join(out_dir, 'study.md')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(render_report(results))
    return path
