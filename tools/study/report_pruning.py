"""The report's pruning section (part 6, :mod:`.pruning`): accuracy against
forward FLOPs ratio per scorer and setting, the fixed cheaper placements of
part 3 beside them, one plot, and a verdict per scorer and protocol."""

import math
import string
from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from quadra_mm.comparison.statistics import fmt, mean_std  # noqa: E402

from .pruning import BUDGET_SETTING, FRACTIONS, IN_TRAINING, setting_name  # noqa: E402

PROTOCOL_LABELS = {
    'shift': 'task (b), QNv2 adapters only',
    'detection': 'demo detector (QNv2 Mask R-CNN)',
}
# Part 3's fixed placements as the 0-based ResNet stages they keep.
PLACEMENTS = {'stages-2-4': (1, 2, 3), 'late-stages': (2, 3)}


def _scale(protocol: str) -> float:
    """Shown as % (top-1) or mAP x 100, so that differences read alike."""
    return 1.0 if protocol == 'shift' else 100.0


def within_spread(pruned: Sequence[float], unpruned: Sequence[float]) -> str:
    """Whether the pruned models keep accuracy within the seed spread of the
    unpruned ones, seed by seed.

    ``d`` = pruned - unpruned per seed, ``sigma`` the sample std of the
    unpruned metric over seeds: *supported* if ``mean(d) - 2 SE >= -sigma``
    (even the pessimistic end of the loss is inside the spread), *not
    supported* if ``mean(d) + 2 SE < -sigma`` (clearly outside it),
    *inconclusive at this scale* otherwise: the study's rule turned from
    "beats" into "no worse than the spread"."""
    diffs = [p - u for p, u in zip(pruned, unpruned)]
    mean, std = mean_std(diffs)
    se = std / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    sigma = mean_std(unpruned)[1]
    text = f'{mean:+.2f} (SE {se:.2f}, seed spread {sigma:.2f}, n={len(diffs)})'
    if mean - 2 * se >= -sigma:
        return f'**supported**: {text}'
    if mean + 2 * se < -sigma:
        return f'**not supported** (outside the spread): {text}'
    return f'**inconclusive at this scale**: {text}'


def _setting_values(part: dict, protocol: str, scorer: str, setting: str) -> Dict[str, List[float]]:
    key = part['reported'][0]
    runs = part['runs']
    return dict(
        test=[_scale(protocol) * r['settings'][scorer][setting]['test'][key] for r in runs],
        flops=[r['settings'][scorer][setting]['flops_ratio'] for r in runs],
        pruned=[r['settings'][scorer][setting]['pruned'] for r in runs],
    )


def _placements(results: dict, part: dict) -> List[Tuple[str, float, List[dict]]]:
    """Part 3's fixed placements (trained so, not pruned) that were run:
    (description, this network's forward FLOPs ratio, runs), the ratio
    counted from the pruning part's per-adapter FLOPs."""
    run = part['runs'][0]
    f0 = run['first_order_flops']
    placements = []
    for name, stages in PLACEMENTS.items():
        ablation = results.get('ablation', {}).get(name)
        if ablation is not None:
            kept = sum(a['flops'] for a in run['adapters'] if a['stage'] in stages)
            placements.append((ablation['describe'], (f0 + kept) / f0, ablation['runs']))
    return placements


def _table(results: dict, protocol: str, part: dict) -> List[str]:
    unit = 'test top-1 %' if protocol == 'shift' else 'test bbox mAP ×100'
    lines = [
        f'| scorer, adapters switched off | adapters off | forward FLOPs '
        f'ratio | **{unit}** | d vs unpruned |',
        '|---|---|---|---|---|',
    ]
    unpruned = _setting_values(part, protocol, 'ablation', setting_name(0.0))['test']
    settings = [setting_name(f) for f in FRACTIONS] + [BUDGET_SETTING]
    for scorer in part['scorers']:
        for setting in settings:
            if scorer != 'ablation' and setting in (setting_name(0.0), setting_name(1.0)):
                continue  # the same model for every scorer
            v = _setting_values(part, protocol, scorer, setting)
            d = [p - u for p, u in zip(v['test'], unpruned)]
            label = (
                'none (unpruned)'
                if setting == setting_name(0.0)
                else (
                    'all (first-order)' if setting == setting_name(1.0) else f'{scorer}, {setting}'
                )
            )
            lines.append(
                f'| {label} | {fmt(v["pruned"])} | '
                f'{mean_std(v["flops"])[0]:.3f}× | **{fmt(v["test"])}** | '
                f'{fmt(d, 2)} |'
            )
    if protocol == 'shift':
        lines += [
            f'| fixed placement: {describe} (trained so) | - | {ratio:.3f}× | '
            f'{fmt([r["test"] for r in runs])} | - |'
            for describe, ratio, runs in _placements(results, part)
        ]
    return lines


def _in_training(part: dict, setting: str) -> Dict[str, List[float]]:
    """Task (b)'s runs pruned in training at ``setting``, in seed order."""
    runs = sorted(part['in_training']['settings'][setting], key=lambda r: r['seed'])
    seeds = [r['seed'] for r in part['runs']]
    if [r['seed'] for r in runs] != seeds:  # the table pairs them seed by seed
        raise ValueError(
            f'pruning results: the runs pruned in training at {setting} have '
            f'seeds {[r["seed"] for r in runs]}, those pruned after training {seeds}'
        )
    return dict(
        test=[r['test'] for r in runs],
        flops=[r['flops_ratio'] for r in runs],
        pruned=[r['pruned'] for r in runs],
    )


def _in_training_table(part: dict, parts: Dict[str, string.Template]) -> str:
    """Pruned in training against pruned after training, setting by setting
    (paired by seed: the same source model, lr and data order up to the
    pruning iteration)."""
    info = part['in_training']
    unpruned = _setting_values(part, 'shift', 'ablation', setting_name(0.0))['test']
    lines = [
        '| ablation order, switched off | adapters off | forward FLOPs ratio | '
        '**test top-1 %, pruned in training** | pruned after training | '
        'd in training vs after | d vs unpruned | within the spread? |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for setting in IN_TRAINING:
        during = _in_training(part, setting)
        after = _setting_values(part, 'shift', info['scorer'], setting)['test']
        lines.append(
            f'| {setting} | {fmt(during["pruned"])} | {mean_std(during["flops"])[0]:.3f}× | '
            f'**{fmt(during["test"])}** | {fmt(after)} | '
            f'{fmt([d - a for d, a in zip(during["test"], after)], 2)} | '
            f'{fmt([d - u for d, u in zip(during["test"], unpruned)], 2)} | '
            f'{within_spread(during["test"], unpruned).split(":")[0]} |'
        )
    return parts['pruning_in_training'].substitute(
        prune_iter=info['prune_iter'],
        iters=info['iters'],
        scorer=info['scorer'],
        lr=f'{info["lr"]:g}',
        table='\n'.join(lines),
    )


def plot_pruning(results: dict, path: str) -> None:
    """Test metric against forward FLOPs ratio, a line per scorer, mean ±
    std over seeds; part 3's fixed placements as markers (task b)."""
    protocols = list(results['pruning'])
    fig, axes = plt.subplots(1, len(protocols), figsize=(6 * len(protocols), 4.2), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        part = results['pruning'][protocol]
        for scorer in part['scorers']:
            points = [_setting_values(part, protocol, scorer, setting_name(f)) for f in FRACTIONS]
            x = [mean_std(p['flops'])[0] for p in points]
            y = [mean_std(p['test']) for p in points]
            ax.errorbar(
                x,
                [m for m, _ in y],
                yerr=[0 if math.isnan(s) else s for _, s in y],
                marker='o',
                capsize=3,
                label=f'{scorer} order',
            )
        if 'in_training' in part:
            points = [_in_training(part, setting) for setting in IN_TRAINING]
            y = [mean_std(p['test']) for p in points]
            ax.errorbar(
                [mean_std(p['flops'])[0] for p in points],
                [m for m, _ in y],
                yerr=[s for _, s in y],
                marker='^',
                capsize=3,
                linestyle='--',
                label=f'{part["in_training"]["scorer"]} order, pruned at iteration '
                f'{part["in_training"]["prune_iter"]}, trained on',
            )
        if protocol == 'shift':
            for describe, ratio, runs in _placements(results, part):
                mean, std = mean_std([r['test'] for r in runs])
                ax.errorbar(
                    [ratio],
                    [mean],
                    yerr=[std],
                    marker='s',
                    linestyle='none',
                    capsize=3,
                    label=f'fixed: {describe}',
                )
        ax.set_xlabel('forward FLOPs ratio to the first-order model')
        ax.set_ylabel('test top-1 (%)' if protocol == 'shift' else 'test bbox mAP ×100')
        ax.set_title(PROTOCOL_LABELS[protocol], fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        'Pruning adapters: 0 / 25 / 50 / 75 / 100 % switched off per '
        'scorer (right to left), mean ± std over seeds',
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pruning_claims(part: dict, protocol: str, parts: Dict[str, string.Template]) -> List[str]:
    unpruned = _setting_values(part, protocol, 'ablation', setting_name(0.0))['test']
    rows = []
    for scorer in part['scorers']:
        v = _setting_values(part, protocol, scorer, BUDGET_SETTING)
        claim = parts['claim_pruning'].substitute(protocol=PROTOCOL_LABELS[protocol], scorer=scorer)
        if not any(v['pruned']):  # nothing to prune: no evidence either way
            text = parts['verdict_pruning_budget_met'].substitute(
                flops=f'{mean_std(v["flops"])[0]:.3f}'
            )
        else:
            text = (
                f'{within_spread(v["test"], unpruned)} (FLOPs '
                f'{mean_std(v["flops"])[0]:.3f}×, {fmt(v["pruned"])} adapters off)'
            )
        rows.append(f'| {claim} | {text} |')
    if 'in_training' in part:
        info = part['in_training']
        v = _in_training(part, BUDGET_SETTING)
        claim = parts['claim_pruning_in_training'].substitute(
            protocol=PROTOCOL_LABELS[protocol],
            scorer=info['scorer'],
            prune_iter=info['prune_iter'],
            iters=info['iters'],
        )
        rows.append(
            f'| {claim} | {within_spread(v["test"], unpruned)} (FLOPs '
            f'{mean_std(v["flops"])[0]:.3f}×, {fmt(v["pruned"])} adapters off) |'
        )
    return rows


def _rank_agreement(part: dict) -> str:
    """How often the norm order's first-pruned half equals the ablation's."""
    agree = []
    for run in part['runs']:
        settings = run['settings']
        half = setting_name(0.5)
        a = set(settings['ablation'][half]['adapters'])
        n = set(settings['norm'][half]['adapters'])
        agree.append(len(a & n) / len(a) if a else 1.0)
    return f'{mean_std(agree)[0]:.0%}'


def pruning_section(results: dict, parts: Dict[str, string.Template]) -> str:
    """The report's pruning section (its 'not run' text without it)."""
    pruning = results.get('pruning')
    if not pruning:
        return parts['pruning_not_run'].substitute()
    tables, claims = [], []
    for protocol, part in pruning.items():
        run = part['runs'][0]
        tables.append(
            f'### {PROTOCOL_LABELS[protocol]}\n\n'
            f'{len(run["adapters"])} adapters; unpruned forward FLOPs '
            f'{run["adapted_flops"] / run["first_order_flops"]:.3f}× the first-order '
            f'model; ranked on val by `{part["metric"]}`; the norm order prunes '
            f'{_rank_agreement(part)} of the same adapters as the ablation order '
            'at 50 %.\n\n'
            + '\n'.join(_table(results, protocol, part))
            + (f'\n\n{_in_training_table(part, parts)}' if 'in_training' in part else '')
        )
        claims += pruning_claims(part, protocol, parts)
    return parts['pruning_run'].substitute(tables='\n\n'.join(tables), claims='\n'.join(claims))
