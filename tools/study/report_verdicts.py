"""The rows of the report's verdicts table: each claim of parts 1-4 and the
paper's efficiency claim with its verdict from the paired per-seed
differences (:func:`quadra_mm.comparison.statistics.verdict`)."""

import string
from typing import Dict, List, Tuple

from quadra_mm.comparison.statistics import verdict

from .arms import RECIPE_PAIRS
from .report_curves import efficiency_target, first_reach
from .report_labels import TASK_LABELS, source_batch
from .report_recipe import recipe_claims

__all__ = ['verdict_rows']


def verdict_rows(results: dict, parts: Dict[str, string.Template]) -> List[Tuple[str, str]]:
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
        # QNv2 adapters against LoRA is the first claim above
        pairs = [pair for pair in RECIPE_PAIRS if pair != ('qnv2-adapters', 'lora')]
        claims += recipe_claims(task, arms, parts, pairs=pairs)
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
        reach = first_reach(results['efficiency']['runs'], efficiency_target(results))
        if reach is None:
            text = parts['verdict_paper_scratch_behind'].substitute(
                scratch_iters=results['efficiency']['iters'], scratch_factor=s['scratch_factor']
            )
        else:
            text = parts['verdict_paper_scratch_reached'].substitute(
                reach_ratio=f'{reach / s["iters"]:.1f}',
                saved=f'{1 - s["iters"] / reach:.0%}',
                source_images=f'{s["source_iters"] * source_batch(s):,}',
                scratch_images=f'{reach * s["batch"]:,}',
                adapt_images=f'{s["iters"] * s["batch"]:,}',
            )
        claims.append((parts['claim_paper'].substitute(), text))
    return claims
