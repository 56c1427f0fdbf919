"""Cost of quadratic adapters against the first-order backbone, written as markdown.

For each backbone (ConvNeXt-T with adapters on every depthwise conv, ResNet-50 with
adapters on every bottleneck 3x3; rank 8, k=3, d=2) and precision, measures in one
process, on the same weights and inputs:

* parameter and FLOP overhead: forward FLOPs of one image from mmengine's complexity
  analysis (``FlopAnalyzer``, what mmdet's ``get_flops.py`` runs; where mmengine is not
  installed, ``torch.utils.flop_counter.FlopCounterMode``), training FLOPs of one
  forward+backward, which includes the branch recompute, from ``FlopCounterMode``
  (mmengine's analysis traces the forward only);
* train-step time (forward, backward, AdamW step, every parameter trainable) of the
  adapted model with the memory-efficient backward on and off, and with ``--compile``
  of ``torch.compile``-d first-order and adapted models (the optimizer step eager);
* with ``--frozen`` instead, the frozen regime (primary weights frozen; adapters, norms
  and head train, as ``QuadraticStageHook``'s phase 1): the adapted model's step (its
  automatic backward keeps the projections; and always recomputing them), LoRA as PEFT
  writes it with the same placement and rank (and PEFT's own with ``--peft-path``),
  each time ratio next to its train FLOP ratio, and saved activations;
* saved-activation bytes of a training forward (each storage once, parameters
  excluded, autocast copies of weights included) with the memory-efficient backward
  on and off; on CUDA also the peak memory of a train step;
* inference time before and after ``export_for_inference`` (and compiled, with
  ``--compile``), adapters with a non-zero ``U`` so that none is dropped.

Then, unless switched off: a placement table (which stages, rank, k: forward FLOPs for
every row, step and inference ratios for the rows in ``PLACEMENTS_TIMED``), a pruned
placements table (exported inference with 25 % / 50 % of the adapters, or as many as a
1.02x forward FLOPs budget needs, switched off and dropped, against their FLOP ratios:
does the time fall with the FLOPs?), and the
train iteration (``model.train_step``: data preprocessor, forward, losses, backward,
the config's optimizer at lr 0) of the demo QNv2 Mask R-CNN (or the detector configs
given, e.g. the flagship ``configs/qnv2_mask-rcnn_coco.py`` on 800² images) against its
first-order twin (the same model with every quadratic layer replaced by its plain conv,
sharing the weights; ``U = 0`` as at the start of fine-tuning, so both see the same
proposals), with the FLOPs of one iteration of each (``FlopCounterMode``).

Every repeat runs each variant once, in turn; a ratio (adapted / first-order) is the
median over repeats of the ratio within a repeat, shown with its range over repeats
(``1.045× (1.02–1.07)``): neighbours in time share the machine's state, so the
within-repeat ratio drifts less than the times do, and the range says how far one
number can be trusted. Absolute times are medians.

On CPU the clock is the process's CPU time (``time.process_time``): on a shared
machine a process that waits for a core is not charged for the wait, so the ratios
move less than wall-clock ones (``--clock wall``).

    python tools/benchmark_adapters.py --threads 1 --compile   # CPU, writes docs/benchmarks.md
    python tools/benchmark_adapters.py --device cuda --batch-size 128 --append
    python tools/benchmark_adapters.py --threads 1 --frozen --batch-size 4 --image-size 128

The code is the package ``tools/benchmarking/``: ``harness`` (interleaved timing,
ratios), ``zoo`` (backbones and adapter targets), ``flops`` (FLOP counts), ``regimes``
(model variants, train steps in the full and frozen regimes, saved activations),
``lora`` (LoRA as PEFT writes it), ``inference`` (export and inference timing),
``placement`` (placement and pruned-placement tables), ``detector`` (the Mask R-CNN
iteration), ``tables`` (the rows of the main and frozen tables), ``markdown`` (goals,
page introduction, tables) and ``cli`` (this command line).
"""

from .flops import FLOP_FORMULAS, adapter_forward_flops, counted_flops, forward_flops
from .harness import ratio, repeat_times
from .placement import PRUNED_SETTINGS, placement_rows, pruned_rows
from .regimes import Bench, freeze_primary
from .zoo import ADAPTER, AUTOCAST_DTYPES, ZOOS

__all__ = [
    'ADAPTER',
    'AUTOCAST_DTYPES',
    'Bench',
    'FLOP_FORMULAS',
    'PRUNED_SETTINGS',
    'ZOOS',
    'adapter_forward_flops',
    'counted_flops',
    'forward_flops',
    'freeze_primary',
    'placement_rows',
    'pruned_rows',
    'ratio',
    'repeat_times',
]
