"""``docs/study.md`` and its plots from the results of ``tools/run_study.py``:
the prose is the Markdown template ``report_template.md`` beside this file
(:mod:`.report_template`); this module fills in its placeholders and writes
the report, the figures and results.json. The numbers come from
:mod:`.report_tables`, :mod:`.report_verdicts`, :mod:`.report_same_task` and
:mod:`.report_pruning`, the figures from :mod:`.report_plots`.

Every number in the report is a mean +- sample standard deviation over the
seeds; every claim gets a verdict from the paired per-seed differences
(the comparison tool's rule, :func:`quadra_mm.comparison.statistics.verdict`).
"""

import os
import os.path as osp
import statistics
import string
from typing import Dict

from quadra_mm.comparison.cache import write_json, write_text
from quadra_mm.comparison.statistics import fmt

from .report_curves import efficiency_target, first_reach
from .report_labels import ARM_LABELS, TASK_LABELS, source_batch
from .report_plots import plot_bars, plot_curves, plot_efficiency, plot_shift_examples
from .report_pruning import plot_pruning, pruning_section
from .report_recipe import recipe_section
from .report_same_task import plot_same_task, same_task_section
from .report_tables import arm_table, detection_table, headline_table, sweep_table
from .report_template import TEMPLATE, paragraph, template_parts
from .report_verdicts import verdict_rows

__all__ = ['write_report', 'render_report', 'training_seconds']


def training_seconds(results: dict) -> float:
    """Sum of the recorded training times of every run of the study."""
    total = sum(r['seconds'] for r in results['source'].values())
    for arms in results['tasks'].values():
        for arm in arms.values():
            total += arm.get('sweep_seconds', 0) + sum(r['seconds'] for r in arm['runs'][1:])
    for arm in results.get('budget', {}).get('arms', {}).values():
        total += arm['sweep_seconds'] + sum(r['seconds'] for r in arm['runs'][1:])
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


def _efficiency(results: dict, parts: Dict[str, string.Template]) -> str:
    """The sentence on how long QuadraNet from scratch took to reach QNv2."""
    s, target = results['scale'], efficiency_target(results)
    reach = first_reach(results['efficiency']['runs'], target)
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


def _seeds_note(results: dict, parts: Dict[str, string.Template]) -> str:
    """Which results have more seeds than the scale's (part 3b's close pairs)."""
    grown = [info for info in results.get('close_pairs', {}).values() if info['extended']]
    if not grown:
        return ''
    return parts['seeds_note'].substitute(
        extra_seeds=grown[0]['seeds'], count=len(results['scale']['seeds']) + len(grown[0]['seeds'])
    )


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
        seeds_note=_seeds_note(results, parts),
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
        source_batch=source_batch(s),
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
        '' if s['name'] == 'full' else paragraph(parts['quick_note'].substitute())
    )
    values['headline_table'] = '\n'.join(headline_table(results))
    values['claims'] = '\n'.join(
        f'| {claim} | {text} |' for claim, text in verdict_rows(results, parts)
    )
    if 'efficiency' in results:
        efficiency = _efficiency(results, parts)
        values['efficiency_summary'] = paragraph(
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
        + '\n'.join(arm_table(task, arms, results.get('step_time_ratios'), len(s['seeds'])))
        for task, arms in tasks.items()
    )
    values['sweep_table'] = '\n'.join(sweep_table(tasks))
    edge = [
        f'{task} / {ARM_LABELS[name]}'
        for task, arms in tasks.items()
        for name, arm in arms.items()
        if arm['lr'] in (max(s['lrs']), min(s['lrs']))
    ]
    values['edge_note'] = paragraph(
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
            detection_table='\n'.join(detection_table(det)),
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
    values['recipe_section'] = recipe_section(results, parts)
    values['same_task_section'] = same_task_section(results, parts)
    values['pruning_section'] = pruning_section(results, parts)
    return parts['report'].substitute(values) + '\n'


def write_report(results: dict, out_dir: str, data_dir: str) -> str:
    """Write ``<out_dir>/study.md`` (:func:`render_report`),
    ``<out_dir>/study/*.png`` and ``<out_dir>/study/results.json``; return
    the path of the report."""
    fig_dir = osp.join(out_dir, 'study')
    os.makedirs(fig_dir, exist_ok=True)
    write_json(osp.join(fig_dir, 'results.json'), results)
    plot_shift_examples(data_dir, osp.join(fig_dir, 'shift_examples.png'))
    plot_curves(results, osp.join(fig_dir, 'curves.png'))
    plot_bars(results, osp.join(fig_dir, 'final_accuracy.png'))
    if 'efficiency' in results:
        plot_efficiency(results, efficiency_target(results), osp.join(fig_dir, 'efficiency.png'))
    if 'same_task' in results:
        plot_same_task(results['same_task'], osp.join(fig_dir, 'same_task.png'))
    if results.get('pruning'):
        plot_pruning(results, osp.join(fig_dir, 'pruning.png'))
    path = osp.join(out_dir, 'study.md')
    write_text(path, render_report(results))
    return path
