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
"""
import argparse
import contextlib
import copy
import datetime
import os
import os.path as osp
import platform
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers, replace_module
from quadra_mm.adapters.pruning import prune_fraction, prune_to_flops, switch_off
from quadra_mm.deploy import export_for_inference
from quadra_mm.ops import layer_config, saved_tensor_bytes, share_parameters

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_DETECTOR = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_qnv2-r18_fpn_shapes.py')
ADAPTER = dict(rank=8, kernel_size=3, dilation=2)
# Issue 7 (CPU, 1 thread, batch 8, 224²): step <= 1.08x eager, <= 1.05x compiled,
# exported inference <= 1.05x, saved activations 1.00x (SPEC §6: <= 1.05x), demo Mask
# R-CNN iteration <= 1.03x. GPU (H200, batch 128, bf16): step <= 1.15x eager.
GOALS = {'cpu': dict(step=1.08, compiled_step=1.05, saved=1.05, infer=1.05, detector=1.03),
         'cuda': dict(step=1.15, compiled_step=1.05, saved=1.05, infer=1.05, detector=1.05)}
# Placement table: (label, 0-based stages or None for all) x rank x adapter k.
PLACEMENT_STAGES = (('all (0-3)', None), ('1-3', (1, 2, 3)), ('2-3', (2, 3)))
PLACEMENT_RANKS = (4, 8, 16)
PLACEMENT_KS = (3, 1)
# The rows that are also timed (the full grid would take about an hour on one core);
# all stages at rank 8, k=3 is the main table's row.
PLACEMENTS_TIMED = (('1-3', 8, 3), ('2-3', 8, 3), ('all (0-3)', 4, 3), ('all (0-3)', 8, 1))
# Pruned placements (issue 18): a fraction of the adapters, or a forward FLOPs budget.
PRUNED_SETTINGS = (('25 %', dict(fraction=0.25)), ('50 %', dict(fraction=0.5)),
                   ('<= 1.02x FLOPs', dict(max_ratio=1.02)))


def _mmpretrain_convnext():
    from mmpretrain.models import ConvNeXt
    return ConvNeXt(arch='tiny')


def _mmpretrain_resnet50():
    from mmpretrain.models import ResNet
    return ResNet(depth=50)


def _timm_convnext():
    import timm
    return timm.create_model('convnext_tiny')


def _torchvision_resnet50():
    from torchvision.models import resnet50
    return resnet50()


# zoo -> model -> (builder, adapter targets). The timm/torchvision zoo is for machines
# without OpenMMLab (the §6 calibration used timm's ConvNeXt-T).
ZOOS = {
    'mmpretrain': {
        'ConvNeXt-T': (_mmpretrain_convnext, 'convnext'),
        'ResNet-50': (_mmpretrain_resnet50, 'resnet'),
    },
    'timm': {
        'ConvNeXt-T': (_timm_convnext,
                       [dict(type=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.conv_dw')]),
        'ResNet-50': (_torchvision_resnet50, 'resnet'),
    },
}


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                        transposed, _output_padding, _groups, output_mask, out_shape=None,
                        **kwargs) -> int:
    """grad_input and grad_weight each cost the forward's FLOPs. torch's own formula
    drops ``groups`` for grad_weight, counting a depthwise conv's backward ``groups``
    times too high (96x on ConvNeXt-T's first stage)."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


FLOP_FORMULAS = {torch.ops.aten.convolution_backward: _conv_backward_flop}


def _outputs(out) -> tuple:
    return out if isinstance(out, (tuple, list)) else (out, )


def _loss(out) -> torch.Tensor:
    return sum(o.float().square().mean() for o in _outputs(out))


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def repeat_times(fns: Dict[str, Callable[[], object]], device: torch.device, warmup: int,
                 repeats: int, clock: Callable[[], float]) -> Dict[str, List[float]]:
    """Time of each ``fn`` in every repeat (after ``warmup`` untimed ones); every repeat
    runs all of them once, in turn."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for repeat in range(warmup + repeats):
        for name, fn in fns.items():
            _sync(device)
            start = clock()
            fn()
            _sync(device)
            if repeat >= warmup:
                times[name].append(clock() - start)
    return times


def forward_counter() -> str:
    """Which counter :func:`forward_flops` uses."""
    try:
        import mmengine.analysis  # noqa: F401
    except ModuleNotFoundError:
        return 'FlopCounterMode'
    return 'mmengine'


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Eval-mode forward FLOPs of the first image of ``x``, with :func:`forward_counter`'s
    counter (mmengine counts a multiply-add once, ``FlopCounterMode`` twice; the tables
    show ratios)."""
    model.eval()
    image = x[:1]
    if forward_counter() == 'mmengine':
        from mmengine.analysis import FlopAnalyzer
        # As get_flops.py: a jit trace of the forward. Importing quadra_mm (done by
        # quadra_mm.adapters) makes it count the quadratic branch (quadra_mm.flops).
        analyzer = FlopAnalyzer(model, (image, ))
        return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter, torch.no_grad():
        model(image)
    return counter.get_total_flops()


# fp16 is mmdet's --amp default on CUDA; the CPU autocast runs it too.
AUTOCAST_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Bench:
    """One backbone at one precision and placement: the model variants and their
    measurements."""

    def __init__(self, builder: Callable[[], nn.Module], targets, args, dtype: str,
                 adapter: Optional[dict] = None, stages: Optional[Sequence[int]] = None) -> None:
        self.device = torch.device(args.device)
        self.memory_format = (torch.channels_last if self.device.type == 'cuda'
                              else torch.contiguous_format)
        self.autocast_dtype = AUTOCAST_DTYPES[dtype]
        torch.manual_seed(0)
        first_order = builder().to(self.device, memory_format=self.memory_format)
        adapted = copy.deepcopy(first_order)
        inject_quadratic_adapters(adapted, targets, stages=stages, **(adapter or ADAPTER))
        adapted.to(memory_format=self.memory_format)
        # A trained-looking U: export keeps every branch, timings include all of them.
        for _, layer in quadratic_layers(adapted):
            nn.init.normal_(layer.quad_u.weight, std=1e-3)
        self.models = {'first_order': first_order, 'adapted': adapted}
        self.x = torch.randn(args.batch_size, 3, args.image_size, args.image_size,
                             device=self.device).contiguous(memory_format=self.memory_format)
        self.args = args

    def add_plain_backward(self) -> None:
        unsaved = copy.deepcopy(self.models['adapted'])
        for _, layer in quadratic_layers(unsaved):
            layer.memory_efficient = False
        self.models['adapted_plain_backward'] = unsaved

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _repeat_times(self, fns: Dict[str, Callable[[], object]]) -> Dict[str, List[float]]:
        return repeat_times(fns, self.device, self.args.warmup, self.args.repeats,
                            self.args.clock_fn)

    def _train_step_fn(self, model: nn.Module, compiled: bool = False) -> Callable[[], None]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        forward = torch.compile(model) if compiled else model

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                out = forward(self.x)
            _loss(out).backward()
            optimizer.step()

        return step

    def train_times(self, compiled: bool = False) -> Dict[str, List[float]]:
        """Step times (per repeat) of every model, and of compiled copies of the first-order and the
        adapted model (keys ``*_compiled``) when ``compiled``."""
        fns = {}
        for name, model in self.models.items():
            model.train()
            fns[name] = self._train_step_fn(model)
        if compiled:
            torch._dynamo.reset()
            for name in ('first_order', 'adapted'):
                fns[f'{name}_compiled'] = self._train_step_fn(
                    copy.deepcopy(self.models[name]), True)
        return self._repeat_times(fns)

    def peak_memory(self) -> Dict[str, int]:
        """CUDA peak allocated memory of one train step (optimizer state included)."""
        peaks = {}
        for name, model in self.models.items():
            step = self._train_step_fn(model)
            step()
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            step()
            peaks[name] = torch.cuda.max_memory_allocated(self.device)
        return peaks

    def saved_bytes(self) -> Dict[str, int]:
        result = {}
        for name, model in self.models.items():
            model.train()
            with self.autocast():
                result[name] = saved_tensor_bytes(lambda: model(self.x),
                                                  ignore=model.parameters())[0]
        return result

    def inference_times(self, compiled: bool = False) -> Dict[str, List[float]]:
        """Inference times (per repeat) of the first-order, adapted and exported models (and
        compiled ones when ``compiled``); ``export_max_abs_diff``: exported vs adapted output."""
        first_order, adapted = self.models['first_order'], self.models['adapted']
        variants = {'first_order': first_order, 'adapted': adapted,
                    'exported': export_for_inference(adapted)}
        if compiled:
            torch._dynamo.reset()
            # Not compile(model.eval()): mmpretrain's ConvNeXt.train() returns None.
            variants['first_order_compiled'] = torch.compile(copy.deepcopy(first_order))
            variants['exported_compiled'] = export_for_inference(adapted, compile=True)
        for model in variants.values():
            model.eval()
        with torch.inference_mode():
            expected = _outputs(adapted(self.x))
            exported = _outputs(variants['exported'](self.x))
            error = max((a.float() - b.float()).abs().max().item()
                        for a, b in zip(expected, exported))
        return {**self.eval_times(variants), 'export_max_abs_diff': [error]}

    def eval_times(self, variants: Dict[str, nn.Module]) -> Dict[str, List[float]]:
        """Inference times (per repeat) of each of ``variants`` on this bench's input."""
        for model in variants.values():
            model.eval()

        def infer(model):
            def run():
                with self.autocast():
                    model(self.x)
            return run

        with torch.inference_mode():
            return self._repeat_times({name: infer(m) for name, m in variants.items()})

    def flops(self) -> Dict[str, int]:
        """Forward FLOPs (eval) and training forward+backward FLOPs (memory-efficient)."""
        counts = {}
        for name in ('first_order', 'adapted'):
            model = self.models[name]
            counts[f'{name}_forward'] = forward_flops(model, self.x)
            model.train()
            with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
                _loss(model(self.x)).backward()
            model.zero_grad(set_to_none=True)
            counts[f'{name}_train'] = counter.get_total_flops()
        return counts

    def params(self) -> Dict[str, int]:
        return {name: sum(p.numel() for p in self.models[name].parameters())
                for name in ('first_order', 'adapted')}


Measure = Union[float, Sequence[float]]


def _ratio(value: Measure, base: Measure, goal: Optional[float] = None) -> str:
    """``value / base`` as ``1.045×``, ✓/✗ against ``goal``. For per-repeat times, the
    median of the within-repeat ratios followed by their range: ``1.045× ✓ (1.02–1.07)``."""
    if isinstance(value, (int, float)):
        ratios = [value / base]
    else:
        ratios = [v / b for v, b in zip(value, base)]
    ratio = statistics.median(ratios)
    text = f'{ratio:.3f}×'
    if goal is not None:
        text += ' ✓' if ratio <= goal else ' ✗'
    if len(ratios) > 1:
        text += f' ({min(ratios):.2f}–{max(ratios):.2f})'
    return text


def _ms(times: Sequence[float]) -> str:
    return f'{1e3 * statistics.median(times):.0f} ms'


def measure(name: str, builder, targets, args, dtype: str) -> Dict[str, str]:
    goals = GOALS[torch.device(args.device).type]
    bench = Bench(builder, targets, args, dtype)
    bench.add_plain_backward()
    params, flops = bench.params(), bench.flops()
    saved = bench.saved_bytes()
    train = bench.train_times(args.compile)
    infer = bench.inference_times(args.compile)
    row = {
        'model': name,
        'precision': f'{dtype} autocast' if AUTOCAST_DTYPES[dtype] else 'fp32',
        'params': f'+{100 * (params["adapted"] / params["first_order"] - 1):.2f}%',
        'FLOPs fwd / train': (f'{_ratio(flops["adapted_forward"], flops["first_order_forward"])} / '
                              f'{_ratio(flops["adapted_train"], flops["first_order_train"])}'),
        'first-order step': _ms(train['first_order']),
        'step (mem-eff)': _ratio(train['adapted'], train['first_order'], goals['step']),
        'step (plain bwd)': _ratio(train['adapted_plain_backward'], train['first_order']),
        'saved act. (mem-eff)': _ratio(saved['adapted'], saved['first_order'], goals['saved']),
        'saved act. (plain bwd)': _ratio(saved['adapted_plain_backward'], saved['first_order']),
        'infer (adapted)': _ratio(infer['adapted'], infer['first_order']),
        'infer (exported)': _ratio(infer['exported'], infer['first_order'], goals['infer']),
        'export max abs diff': f'{infer["export_max_abs_diff"][0]:.1e}',
    }
    if args.compile:
        row['compiled first-order step'] = _ms(train['first_order_compiled'])
        row['step compiled (adapted vs first-order)'] = _ratio(
            train['adapted_compiled'], train['first_order_compiled'], goals['compiled_step'])
        row['infer compiled (exported vs first-order)'] = _ratio(
            infer['exported_compiled'], infer['first_order_compiled'], goals['infer'])
    if bench.device.type == 'cuda':
        peak = bench.peak_memory()
        plain = _ratio(peak['adapted_plain_backward'], peak['first_order'])
        row['peak mem (mem-eff / plain)'] = (
            f'{_ratio(peak["adapted"], peak["first_order"])} / {plain}')
    print(row, flush=True)
    return row


def placement_rows(name: str, builder, targets, args) -> List[Dict[str, str]]:
    """Forward FLOPs of every placement, step and inference ratios of the timed ones
    (first precision of ``--dtype``, memory-efficient backward, exported inference)."""
    rows = []
    first_order_flops = None
    for label, stages in PLACEMENT_STAGES:
        for rank in PLACEMENT_RANKS:
            for k in PLACEMENT_KS:
                adapter = dict(rank=rank, kernel_size=k, dilation=2 if k > 1 else 1)
                bench = Bench(builder, targets, args, args.dtype[0], adapter, stages)
                params = bench.params()
                if first_order_flops is None:
                    first_order_flops = forward_flops(bench.models['first_order'], bench.x)
                row = {'model': name, 'stages': label, 'rank': str(rank), 'k': str(k),
                       'adapters': str(len(list(quadratic_layers(bench.models['adapted'])))),
                       'params': f'+{100 * (params["adapted"] / params["first_order"] - 1):.2f}%',
                       'FLOPs fwd': _ratio(forward_flops(bench.models['adapted'], bench.x),
                                           first_order_flops),
                       'step': '', 'infer (exported)': ''}
                if (label, rank, k) in PLACEMENTS_TIMED:
                    train = bench.train_times()
                    infer = bench.inference_times()
                    row['step'] = _ratio(train['adapted'], train['first_order'])
                    row['infer (exported)'] = _ratio(infer['exported'], infer['first_order'])
                print(row, flush=True)
                rows.append(row)
    return rows


def adapter_forward_flops(model: nn.Module, x: torch.Tensor) -> Dict[str, int]:
    """Forward FLOPs ``f_i`` of each adapter of ``model`` (first image of ``x``): per
    quadratic layer, its count with every adapter on minus with every adapter off, on the
    exported form (whose layers with ``U = 0`` skip their branch), mmengine's counter."""
    from mmengine.analysis import FlopAnalyzer

    exported = export_for_inference(model)
    exported.eval()  # not chained: mmpretrain's backbones' train() returns None

    def by_module() -> Dict[str, int]:
        analyzer = FlopAnalyzer(exported, (x[:1], ))
        return dict(analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                    .by_module())

    on = by_module()
    switch_off(layer for _, layer in quadratic_layers(exported))
    off = by_module()
    return {name: on[name] - off[name] for name, _ in quadratic_layers(exported)}


def pruned_rows(name: str, builder, targets, args) -> List[Dict[str, str]]:
    """Exported inference of pruned placements against the first-order model, in one
    timing loop with the unpruned exported model: the adapters of ``PRUNED_SETTINGS``
    switched off (``U = 0``) and dropped by ``export_for_inference(drop_zero_adapters=
    True)``, the most expensive first, which is the order importance per FLOP gives
    adapters that matter equally (first precision of ``--dtype``)."""
    bench = Bench(builder, targets, args, args.dtype[0])
    first_order, adapted = bench.models['first_order'], bench.models['adapted']
    flops = adapter_forward_flops(adapted, bench.x)
    f0 = forward_flops(first_order, bench.x)
    order = sorted(flops, key=lambda n: (-flops[n], n))
    variants = {'first_order': first_order, 'unpruned': export_for_inference(adapted)}
    pruned_sets = {}
    for label, rule in PRUNED_SETTINGS:
        names = (prune_to_flops(order, flops, f0, rule['max_ratio']) if 'max_ratio' in rule
                 else prune_fraction(order, rule['fraction']))
        pruned = copy.deepcopy(adapted)
        layers = dict(quadratic_layers(pruned))
        switch_off(layers[n] for n in names)
        variants[label] = export_for_inference(pruned, drop_zero_adapters=True)
        pruned_sets[label] = names
    times = bench.eval_times(variants)
    stage_of = {n: layer.stage for n, layer in quadratic_layers(adapted)}
    rows = []
    for label in ['unpruned', *pruned_sets]:
        names = pruned_sets.get(label, [])
        stages = sorted({str(stage_of[n]) for n in names})
        row = {'model': name, 'pruned': label if names else 'none',
               'adapters off': f'{len(names)} of {len(flops)}',
               'stages pruned (0-based)': ', '.join(stages) or '-',
               'FLOPs fwd': _ratio(forward_flops(variants[label], bench.x), f0),
               'infer (exported)': _ratio(times[label], times['first_order'])}
        print(row, flush=True)
        rows.append(row)
    return rows


def first_order_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every quadratic layer replaced by its plain layer,
    sharing nothing with ``model`` and holding the same primary weights."""
    twin = copy.deepcopy(model)
    for layer_name, layer in list(quadratic_layers(twin)):
        plain = (nn.Conv2d if isinstance(layer, nn.Conv2d) else nn.Linear)(**layer_config(layer),
                                                                         device='meta')
        replace_module(twin, layer_name, share_parameters(plain, layer))
    return twin


def _shapes_batch(cfg, img_size: int, root: str) -> dict:
    """One training batch of ``cfg``'s own pipeline and batch size, read from generated
    shapes data of ``img_size``² (any COCO-style detection config: its dataset is
    pointed at the generated set)."""
    from mmengine.runner import Runner, set_random_seed

    from quadra_mm.datasets import make_demo_data

    data = make_demo_data(osp.join(root, 'shapes'), num_train=cfg.train_dataloader.batch_size,
                          num_val=1, img_size=img_size, seed=1)
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # RepeatDataset and other wrappers
        dataset = dataset.dataset
    dataset.update(data_root=data['out'] + '/', ann_file='annotations/instances_train.json',
                   data_prefix=dict(img='train/'), metainfo=dict(classes=tuple(data['classes'])))
    # In this process and seeded: a multi-scale pipeline draws the same scales in every run.
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    set_random_seed(0)
    return next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))


def detector_row(config: str, args) -> Dict[str, str]:
    """Train iteration (``model.train_step`` with the config's optimizer wrapper) of a QNv2
    detector against its first-order twin, on one batch of generated shapes data (same
    batch, same RNG seed for both).

    The learning rate is set to 0: the optimizer does all its work but no weight moves,
    so ``U`` stays 0 and both models see the same proposals in every repeat. mmengine's
    ``AmpOptimWrapper`` needs a GPU: on CPU such a config runs in fp32 (the row says so).
    """
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import quadra_mm  # noqa: F401  (registers QuadraNetV2)

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    device = torch.device(args.device)
    # The demo configs state their img_size; 800 is a COCO config's shorter side.
    img_size = args.detector_img_size or cfg.get('img_size', 800)
    with tempfile.TemporaryDirectory() as root:
        batch = _shapes_batch(cfg, img_size, root)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    adapted = MODELS.build(cfg.model).to(device).train()
    first_order = first_order_twin(adapted).to(device).train()
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = 0.0
    amp = optim_cfg.get('type') == 'AmpOptimWrapper'
    if amp and device.type != 'cuda':
        optim_cfg.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            optim_cfg.pop(key, None)

    def step_fn(model):
        wrapper = build_optim_wrapper(model, copy.deepcopy(optim_cfg))

        def step():
            torch.manual_seed(0)
            model.train_step(batch, wrapper)
        return step

    steps = {'first_order': step_fn(first_order), 'adapted': step_fn(adapted)}
    flops = {}
    for name, step in steps.items():
        # The whole iteration's FLOPs (forward, losses, backward with the branch
        # recompute): the floor under the time ratio once every kernel runs at one speed.
        with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
            step()
        flops[name] = counter.get_total_flops()
    times = repeat_times(steps, device, args.warmup, args.detector_repeats, args.clock_fn)
    row = {'detector': osp.basename(config),
           'adapters': str(len(list(quadratic_layers(adapted)))),
           'precision': 'AMP' if amp and device.type == 'cuda' else 'fp32',
           'images': ', '.join(f'{h}×{w}' for h, w in (img.shape[1:] for img in batch['inputs'])),
           'FLOPs train': _ratio(flops['adapted'], flops['first_order']),
           'first-order iteration': _ms(times['first_order']),
           'adapted iteration': _ms(times['adapted']),
           'ratio': _ratio(times['adapted'], times['first_order'], GOALS[device.type]['detector'])}
    print(row, flush=True)
    return row


def _device_name(device: torch.device) -> str:
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
    counter = {'mmengine': "mmengine's `FlopAnalyzer` (as mmdet's `get_flops.py`)",
               'FlopCounterMode': '`torch.utils.flop_counter.FlopCounterMode` (mmengine is not '
                                  'installed)'}[forward_counter()]
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
* *step*: forward + backward + AdamW over all parameters (joint fine-tuning, the
  costlier stage). *plain bwd*: the same adapters with `memory_efficient=False`.
  *compiled*: `torch.compile` (inductor) of the model, the optimizer step eager.
* *infer*: eval forward under `torch.inference_mode`, adapters with non-zero `U`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, help='CPU threads (torch.set_num_threads)')
    parser.add_argument('--clock', choices=['cpu', 'wall'],
                        help='process CPU time or wall time (default: cpu on CPU, wall on CUDA)')
    parser.add_argument('--dtype', nargs='+', choices=list(AUTOCAST_DTYPES),
                        default=['fp32', 'bf16'])
    parser.add_argument('--models', nargs='+', choices=list(ZOOS['mmpretrain']),
                        default=list(ZOOS['mmpretrain']))
    parser.add_argument('--zoo', choices=list(ZOOS), default='mmpretrain')
    parser.add_argument('--compile', action='store_true',
                        help='also time torch.compile train and inference')
    parser.add_argument('--no-placement', action='store_true', help='skip the placement table')
    parser.add_argument('--no-detector', action='store_true', help='skip the Mask R-CNN iteration')
    parser.add_argument('--no-pruned', action='store_true',
                        help='skip the pruned placements table')
    parser.add_argument('--detector-config', nargs='+', default=[DEMO_DETECTOR],
                        help='detector configs to time (one row each)')
    parser.add_argument('--detector-img-size', type=int,
                        help="side of the generated images "
                        "(default: the config's img_size, else 800)")
    parser.add_argument('--detector-repeats', type=int, default=10)
    parser.add_argument('--out', default='docs/benchmarks.md')
    parser.add_argument('--append', action='store_true', help='add a section to --out')
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    clock = args.clock or ('cpu' if device.type == 'cpu' else 'wall')
    args.clock_fn = time.process_time if clock == 'cpu' else time.perf_counter

    started = time.perf_counter()
    rows = [measure(name, *ZOOS[args.zoo][name], args, dtype)
            for name in args.models for dtype in args.dtype]
    section = (f'## {_device_name(device)} — torch {torch.__version__}, {args.zoo} models, '
               f'batch {args.batch_size}, {args.image_size}², {args.repeats} repeats, '
               f'{clock} clock, {datetime.date.today().isoformat()}\n\n'
               + markdown_table(rows) + '\n')
    if not args.no_placement:
        placements = [row for name in args.models
                      for row in placement_rows(name, *ZOOS[args.zoo][name], args)]
        section += (f'\n### Cost per placement ({args.dtype[0]}, d=2 for k=3; step and inference '
                    f'timed for {len(PLACEMENTS_TIMED)} rows per model)\n\n'
                    + markdown_table(placements) + '\n')
    if not args.no_pruned:
        pruned = [row for name in args.models
                  for row in pruned_rows(name, *ZOOS[args.zoo][name], args)]
        section += (f'\n### Pruned placements ({args.dtype[0]}): exported inference, the '
                    'most expensive adapters off first\n\n' + markdown_table(pruned) + '\n')
    if not args.no_detector:
        section += (f'\n### Whole detector: train iteration, {args.detector_repeats} repeats\n\n'
                    + markdown_table([detector_row(config, args)
                                      for config in args.detector_config]) + '\n')
    section += f'\nBenchmark wall time: {(time.perf_counter() - started) / 60:.1f} min.\n'
    print(section)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if args.append and osp.exists(args.out):
        with open(args.out, 'a', encoding='utf-8') as f:
            f.write('\n' + section)
    else:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(intro(device.type) + '\n' + section)


if __name__ == '__main__':
    main()
