"""The report's Markdown tables of parts 1, 2 and 4: test top-1 of every arm
on both tasks (the headline), each task's arms, the lr sweep and the
detectors; each a list of table lines."""

from typing import Dict, List, Optional

from quadra_mm.comparison.statistics import fmt

from .report_labels import ARM_LABELS, TASK_LABELS
from .report_recipe import seeds_cell

__all__ = ['headline_table', 'arm_table', 'sweep_table', 'detection_table']


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
        'qnv2-u-lr': ratios['qnv2-adapters'],
        'qnv2-stages': (ratios['qnv2-adapters'] + joint) / 2,
        'quadranet-scratch': joint,
        'first-order-scratch': 1.0,
    }


def arm_table(
    task: str, arms: Dict[str, dict], ratios: Optional[Dict[str, float]], seeds: int
) -> List[str]:
    """One task's arms: chosen lr, val and test top-1 (over ``seeds`` unless
    the cell says otherwise), trainable parameters and the train-step time
    over full fine-tuning (from ``ratios``, if measured)."""
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
            f'{fmt([r["final"] for r in runs])} | **{seeds_cell(runs, seeds)}** | '
            f'{runs[0]["trainable"]:,} | {step} |'
        )
    return lines


def sweep_table(tasks: dict) -> List[str]:
    """Final val top-1 of every arm at every lr of the sweep, the chosen lr bold."""
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


def headline_table(results: dict) -> List[str]:
    """Test top-1 of every arm on both tasks (the README shows it too)."""
    tasks, seeds = results['tasks'], len(results['scale']['seeds'])
    lines = [
        '| arm (same budget, data and lr sweep) | '
        + ' | '.join(f'{TASK_LABELS[t]}: test top-1 %' for t in tasks)
        + ' |',
        '|---|' + '---|' * len(tasks),
    ]
    for name in next(iter(tasks.values())):
        lines.append(
            f'| {ARM_LABELS[name]} | '
            + ' | '.join(seeds_cell(tasks[t][name]['runs'], seeds) for t in tasks)
            + ' |'
        )
    return lines


def detection_table(det: dict) -> List[str]:
    """The QNv2 and first-order detectors: classifier top-1, bbox and segm mAP."""
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
