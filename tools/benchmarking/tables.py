"""The rows of the main table (full regime, inference, export) and of the frozen-regime
table (quadratic adapters and LoRA with the primary weights frozen)."""

import statistics
from typing import Dict

import torch

from .harness import ms, ratio, ratios
from .inference import inference_times
from .markdown import GOALS
from .regimes import Bench
from .zoo import AUTOCAST_DTYPES


def _precision(dtype: str) -> str:
    return f'{dtype} autocast' if AUTOCAST_DTYPES[dtype] else 'fp32'


def measure(name: str, builder, targets, args, dtype: str) -> Dict[str, str]:
    goals = GOALS[torch.device(args.device).type]
    bench = Bench(builder, targets, args, dtype)
    bench.add_plain_backward()
    flops = bench.flops()
    saved = bench.saved_bytes()
    train = bench.train_times(args.compile)
    infer = inference_times(bench, args.compile)
    row = {
        'model': name,
        'precision': _precision(dtype),
        'params': bench.params_overhead(),
        'FLOPs fwd / train': (
            f'{ratio(flops["adapted_forward"], flops["first_order_forward"])} / '
            f'{ratio(flops["adapted_train"], flops["first_order_train"])}'
        ),
        'first-order step': ms(train['first_order']),
        'step (mem-eff)': ratio(train['adapted'], train['first_order'], goals['step']),
        'step (plain bwd)': ratio(train['adapted_plain_backward'], train['first_order']),
        'saved act. (mem-eff)': ratio(saved['adapted'], saved['first_order'], goals['saved']),
        'saved act. (plain bwd)': ratio(saved['adapted_plain_backward'], saved['first_order']),
        'infer (adapted)': ratio(infer['adapted'], infer['first_order']),
        'infer (exported)': ratio(infer['exported'], infer['first_order'], goals['infer']),
        'export max abs diff': f'{infer["export_max_abs_diff"][0]:.1e}',
    }
    if args.compile:
        row['compiled first-order step'] = ms(train['first_order_compiled'])
        row['step compiled (adapted vs first-order)'] = ratio(
            train['adapted_compiled'], train['first_order_compiled'], goals['compiled_step']
        )
        row['infer compiled (exported vs first-order)'] = ratio(
            infer['exported_compiled'], infer['first_order_compiled'], goals['infer']
        )
    if bench.device.type == 'cuda':
        peak = bench.peak_memory()
        plain = ratio(peak['adapted_plain_backward'], peak['first_order'])
        row['peak mem (mem-eff / plain)'] = (
            f'{ratio(peak["adapted"], peak["first_order"])} / {plain}'
        )
    print(row, flush=True)
    return row


# Frozen-regime variants: column label -> model name in Bench.models.
FROZEN_VARIANTS = {
    'QNv2': 'adapted_frozen',
    'QNv2 recompute': 'adapted_frozen_recompute',
    'LoRA': 'lora_frozen',
    'LoRA 2r': 'lora_2r_frozen',
    'PEFT LoRA': 'peft_lora_frozen',
}


def frozen_row(name: str, builder, targets, args, dtype: str) -> Dict[str, str]:
    """The frozen regime (primary weights frozen; adapters, norms and head train) of one
    backbone and precision: for the quadratic adapters (automatic backward: projections
    kept), the same always recomputing (the backward before the automatic choice), LoRA
    as PEFT writes it (and PEFT's own, ``--peft-path``), the train-step time ratio
    against the first-order model in the same regime, next to its train FLOP ratio and
    their difference (median over repeats, with its range), and saved activations. The
    full regime's step (adapted, recomputing, vs first-order) is timed in the same loop.
    """
    bench = Bench(builder, targets, args, dtype)
    bench.add_frozen_regime(args.peft_path)
    flops, saved = bench.flops(), bench.saved_bytes()
    train = bench.train_times()
    base = 'first_order_frozen'
    row = {
        'model': name,
        'precision': _precision(dtype),
        'first-order step (frozen / full)': (f'{ms(train[base])} / {ms(train["first_order"])}'),
    }
    for label, variant in FROZEN_VARIANTS.items():
        if variant not in bench.models:
            continue
        flop_ratio = flops[f'{variant}_train'] / flops[f'{base}_train']
        excess = [r - flop_ratio for r in ratios(train[variant], train[base])]
        row[f'{label}: FLOPs / step / step − FLOPs'] = (
            f'{flop_ratio:.3f}× / {ratio(train[variant], train[base])} / '
            f'{statistics.median(excess):+.3f} ({min(excess):+.2f}…{max(excess):+.2f})'
        )
        row[f'{label}: saved act.'] = ratio(saved[variant], saved[base])
    full_flops = flops['adapted_train'] / flops['first_order_train']
    row['full regime QNv2: FLOPs / step'] = (
        f'{full_flops:.3f}× / {ratio(train["adapted"], train["first_order"])}'
    )
    row['full regime QNv2: saved act.'] = ratio(saved['adapted'], saved['first_order'])
    print(row, flush=True)
    return row
