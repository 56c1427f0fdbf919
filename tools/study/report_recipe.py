"""The report's part 3b (task b): the recipes that train few parameters at the
study's budget and at the longer one, their verdicts pair by pair, which pairs
got more seeds, and whether U at a higher lr wins by the study's rule."""

import string
from typing import Dict, List, Optional, Sequence, Tuple

from quadra_mm.comparison.statistics import fmt, paired_difference, verdict, verdict_kind

from .arms import RECIPE_ARMS, RECIPE_PAIRS, U_LR_MULT
from .report_labels import ARM_LABELS, TASK_LABELS

__all__ = ['seeds_cell', 'recipe_claims', 'recipe_section']


def seeds_cell(runs: List[dict], seeds: int, digits: int = 1) -> str:
    """``mean ± std`` of the test metric, with the count when it is not ``seeds``."""
    text = fmt([r['test'] for r in runs], digits)
    return text if len(runs) == seeds else f'{text} (n={len(runs)})'


def recipe_claims(
    task: str,
    arms: Dict[str, dict],
    parts: Dict[str, string.Template],
    iters: Optional[int] = None,
    pairs: Sequence[Tuple[str, str]] = RECIPE_PAIRS,
) -> List[tuple]:
    """(claim, verdict) rows of ``pairs`` on ``task``'s ``arms`` (the pairs
    both of whose arms ran), at ``iters`` if given."""
    where = TASK_LABELS[task] + (f' at {iters} iterations' if iters else '')
    return [
        (
            parts['claim_recipe'].substitute(
                where=where, arm=ARM_LABELS[arm], control=ARM_LABELS[control]
            ),
            verdict(arms[arm]['runs'], arms[control]['runs']),
        )
        for arm, control in pairs
        if arm in arms and control in arms
    ]


def _default_decision(results: dict, parts: Dict[str, string.Template]) -> str:
    """Whether U at the higher lr beats the adapters-only recipe by the rule
    at some budget and the control is clearly better nowhere (both budgets of
    task b, and task a)."""
    where = {f'(b) at {results["scale"]["iters"]} iterations': results['tasks']['shift']}
    where[f'(b) at {results["budget"]["iters"]} iterations'] = results['budget']['arms']
    where[f'(a) at {results["scale"]["iters"]} iterations'] = results['tasks'].get('heldout', {})
    kinds = {
        name: verdict_kind(
            paired_difference(arms['qnv2-u-lr']['runs'], arms['qnv2-adapters']['runs'])
        )
        for name, arms in where.items()
        if 'qnv2-u-lr' in arms and 'qnv2-adapters' in arms
    }
    wins = [name for name, kind in kinds.items() if kind == 'supported']
    losses = [name for name, kind in kinds.items() if kind == 'clearly worse']
    values = dict(
        mult=f'{U_LR_MULT:g}',
        checked='; '.join(kinds),
        wins='; '.join(wins) or 'nowhere',
        losses='; '.join(losses) or 'nowhere',
    )
    key = 'recipe_default_yes' if wins and not losses else 'recipe_default_no'
    return parts[key].substitute(values)


def _edge_note(budget: dict, lrs: List[float], parts: Dict[str, string.Template]) -> str:
    """Which arms of the longer budget chose an lr at the edge of the sweep."""
    edge = [
        ARM_LABELS[name]
        for name, arm in budget['arms'].items()
        if arm['lr'] in (min(lrs), max(lrs))
    ]
    if not edge:
        return ''
    return ' ' + parts['recipe_edge'].substitute(iters=budget['iters'], arms=', '.join(edge))


def recipe_section(results: dict, parts: Dict[str, string.Template]) -> str:
    """The part 3b section, or the sentence saying it did not run."""
    if 'budget' not in results or 'shift' not in results['tasks']:
        return parts['recipe_not_run'].substitute()
    s = results['scale']
    seeds = len(s['seeds'])
    budgets = {
        s['iters']: results['tasks']['shift'],
        results['budget']['iters']: results['budget']['arms'],
    }
    lines = [
        '| arm | '
        + ' | '.join(f'lr at {iters} it. | test top-1 at {iters} it.' for iters in budgets)
        + ' |',
        '|---|' + '---|---|' * len(budgets),
    ]
    for name in RECIPE_ARMS:
        lines.append(
            f'| {ARM_LABELS[name]} | '
            + ' | '.join(
                f'{arms[name]["lr"]:g} | {seeds_cell(arms[name]["runs"], seeds)}'
                for arms in budgets.values()
            )
            + ' |'
        )
    claims = [
        claim
        for iters, arms in budgets.items()
        for claim in recipe_claims('shift', arms, parts, iters)
    ]
    extended = []
    for iters, info in sorted(results.get('close_pairs', {}).items(), key=lambda kv: int(kv[0])):
        pairs = '; '.join(
            f'{ARM_LABELS[arm]} vs {ARM_LABELS[control]}' for arm, control in info['close']
        )
        extended.append(
            f'at {iters} iterations: {pairs or "none"}'
            + (f' (seeds {info["seeds"]} added to {len(info["extended"])} arms)' if pairs else '')
        )
    return parts['recipe_run'].substitute(
        iters=s['iters'],
        long_iters=results['budget']['iters'],
        factor=results['budget']['factor'],
        seeds=seeds,
        extra_seeds=list(s.get('extra_seeds', ())),
        table='\n'.join(lines),
        claims='\n'.join(f'| {claim} | {text} |' for claim, text in claims),
        close='; '.join(extended),
        edge=_edge_note(results['budget'], s['lrs'], parts),
        decision=_default_decision(results, parts),
    )
