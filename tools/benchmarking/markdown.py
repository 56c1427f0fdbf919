"""Markdown output: the goals, the page's introduction and the tables."""

import platform
from typing import Dict, List

import torch

from .flops import forward_counter
from .zoo import ADAPTER

# Issue 7 (CPU, 1 thread, batch 8, 224²): step <= 1.08x eager, <= 1.05x compiled,
# exported inference <= 1.05x, saved activations 1.00x (SPEC §6: <= 1.05x), demo Mask
# R-CNN iteration <= 1.03x. GPU (H200, batch 128, bf16): step <= 1.15x eager.
GOALS = {
    'cpu': dict(step=1.08, compiled_step=1.05, saved=1.05, infer=1.05, detector=1.03),
    'cuda': dict(step=1.15, compiled_step=1.05, saved=1.05, infer=1.05, detector=1.05),
}


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads'


def markdown_table(rows: List[Dict[str, str]]) -> str:
    header = list(rows[0])
    for row in rows[1:]:
        header += [key for key in row if key not in header]
    table = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    table += ['| ' + ' | '.join(row.get(key, '') for key in header) + ' |' for row in rows]
    return '\n'.join(table)


def intro(device_type: str) -> str:
    goals = GOALS[device_type]
    counter = {
        'mmengine': "mmengine's `FlopAnalyzer` (as mmdet's `get_flops.py`)",
        'FlopCounterMode': '`torch.utils.flop_counter.FlopCounterMode` (mmengine is not installed)',
    }[forward_counter()]
    return f"""# Adapter benchmarks

Written by `tools/benchmark_adapters.py` (see its docstring for the method). Adapters:
rank {ADAPTER['rank']}, k={ADAPTER['kernel_size']}, d={ADAPTER['dilation']}, quadratic
kernel, on every depthwise conv of ConvNeXt-T and every bottleneck 3x3 conv of ResNet-50.
Ratios are adapted / first-order, same process, interleaved repeats: the median of the
within-repeat ratios, (in brackets) their range over the repeats.

Goals ({device_type}, issue 7): train step ≤ {goals['step']:.2f}× eager and
≤ {goals['compiled_step']:.2f}× compiled, saved activations ≤ {goals['saved']:.2f}×
(fp32 and autocast), inference after export ≤ {goals['infer']:.2f}×, demo Mask R-CNN
iteration ≤ {goals['detector']:.2f}× (✓ met, ✗ missed).

* *FLOPs fwd*: eval forward of one image, counted by {counter}.
  *FLOPs train*: one forward+backward, counted by `torch.utils.flop_counter.FlopCounterMode`
  (mmengine's analysis traces the forward only); with the memory-efficient backward it
  includes the branch recompute.
* *saved act.*: bytes autograd saves in a training forward, each storage once, the
  model's parameters excluded (autocast's low-precision weight copies are counted).
* *step*: forward + backward + AdamW over all parameters (joint fine-tuning, phase 2
  of stage training, where the adapters recompute their projections in backward).
  *plain bwd*: the same adapters with `memory_efficient=False`.
  *compiled*: `torch.compile` (inductor) of the model, the optimizer step eager.
* *infer*: eval forward under `torch.inference_mode`, adapters with non-zero `U`.
"""


FROZEN_SECTION = '## Frozen primary weights (adapters train)'
FROZEN_LEGEND = """\
The primary weights frozen; adapters, norms and heads train: phase 1 of
`QuadraticStageHook`, adapters-only fine-tuning, every PEFT-style comparison. Each ratio
is against the first-order model in the same regime (its norms and head train). A cell
*FLOPs / step / step − FLOPs* holds the train-FLOP ratio (one forward+backward as it
runs, `FlopCounterMode`: no weight gradients for frozen layers, the recompute where there
is one), the step-time ratio (median of the within-repeat ratios, their range over the
repeats) and their difference, the time the FLOPs do not explain (median, and its range
over the repeats: the noise of the machine).

* *QNv2*: the quadratic adapters (rank 8, k=3, d=2) with their default backward, which
  keeps the 2r-channel projections while `L` is frozen instead of recomputing them.
* *QNv2 recompute*: the same adapters with `memory_efficient=True` (the projections
  recomputed in backward: the default while `L` trains).
* *LoRA*: rank 8 on the same layers, as PEFT writes it: `Conv2d(in, r, k, stride,
  padding, dilation)` then `Conv2d(r, out, 1)`, `B = 0` (`tools/benchmarking/lora.py`).
  *LoRA 2r*: the same at rank 16, which keeps as many channels for backward (`2r`) as the
  kept projection and costs about the quadratic adapters' FLOPs.
  *PEFT LoRA*: PEFT's own (`inject_adapter_in_model`), with `--peft-path` (installed
  beside the project with `pip install --target`: its `transformers` breaks
  mmpretrain 1.2.0's import); PEFT 0.21 refuses ConvNeXt's depthwise convs at rank 8
  ("support is limited to conv layers where the rank is divisible by groups").
* *full regime*: every parameter trains (the main tables' regime); the adapters
  recompute their projections.
"""


def insert_section(page: str, section: str) -> str:
    """``page`` with ``section`` (starting with its ``## `` title) in place of the
    section of the same title, else right after the introduction (before the first
    other ``## `` section)."""
    title = section.split('\n', 1)[0]
    lines = page.split('\n')
    heads = [i for i, line in enumerate(lines) if line.startswith('## ')]
    if title in lines:
        start = lines.index(title)
        end = next((i for i in heads if i > start), len(lines))
    else:
        start = end = heads[0] if heads else len(lines)
    return '\n'.join(lines[:start] + section.rstrip('\n').split('\n') + [''] + lines[end:])
