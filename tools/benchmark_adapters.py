"""Cost of quadratic adapters against the first-order backbone, written as markdown.

For each backbone (ConvNeXt-T with adapters on every depthwise conv, ResNet-50 with
adapters on every bottleneck 3x3; rank 8, k=3, d=2) and precision, measures in one
process, on the same weights and inputs:

* parameter and FLOP overhead (``torch.utils.flop_counter.FlopCounterMode``; forward,
  and one training forward+backward, which includes the branch recompute);
* train-step time (forward, backward, AdamW step, every parameter trainable) of the
  adapted model with the memory-efficient backward on and off;
* saved-activation bytes of a training forward (each storage once, parameters
  excluded, autocast copies of weights included) with the memory-efficient backward
  on and off; on CUDA also the peak memory of a train step;
* inference time before and after ``export_for_inference`` (and compiled, with
  ``--compile``), adapters with a non-zero ``U`` so that none is dropped.

Times are medians of interleaved repeats (each repeat runs every variant once);
ratios are adapted / first-order.

    python tools/benchmark_adapters.py                      # CPU, writes docs/benchmarks.md
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
import time
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers
from quadra_mm.deploy import export_for_inference
from quadra_mm.ops import saved_tensor_bytes

ADAPTER = dict(rank=8, kernel_size=3, dilation=2)
GOALS = dict(step=1.10, saved=1.05, infer=1.05)


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
        'ConvNeXt-T': (_timm_convnext, [dict(type=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.conv_dw')]),
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


class Bench:
    """One backbone at one precision: the model variants and their measurements."""

    def __init__(self, builder: Callable[[], nn.Module], targets, args, dtype: str) -> None:
        self.device = torch.device(args.device)
        self.memory_format = torch.channels_last if self.device.type == 'cuda' else torch.contiguous_format
        self.autocast_dtype = torch.bfloat16 if dtype == 'bf16' else None
        torch.manual_seed(0)
        first_order = builder().to(self.device, memory_format=self.memory_format)
        adapted = copy.deepcopy(first_order)
        inject_quadratic_adapters(adapted, targets, **ADAPTER)
        adapted.to(memory_format=self.memory_format)
        # A trained-looking U: export keeps every branch, timings include all of them.
        for _, layer in quadratic_layers(adapted):
            nn.init.normal_(layer.quad_u.weight, std=1e-3)
        unsaved = copy.deepcopy(adapted)
        for _, layer in quadratic_layers(unsaved):
            layer.memory_efficient = False
        self.models = {'first_order': first_order, 'adapted': adapted, 'adapted_plain_backward': unsaved}
        self.x = torch.randn(args.batch_size, 3, args.image_size, args.image_size,
                             device=self.device).contiguous(memory_format=self.memory_format)
        self.args = args

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _median_times(self, fns: Dict[str, Callable[[], object]]) -> Dict[str, float]:
        times: Dict[str, List[float]] = {name: [] for name in fns}
        for repeat in range(self.args.warmup + self.args.repeats):
            for name, fn in fns.items():
                _sync(self.device)
                start = time.perf_counter()
                fn()
                _sync(self.device)
                if repeat >= self.args.warmup:
                    times[name].append(time.perf_counter() - start)
        return {name: statistics.median(values) for name, values in times.items()}

    def _train_step_fn(self, model: nn.Module) -> Callable[[], None]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                out = model(self.x)
            _loss(out).backward()
            optimizer.step()

        return step

    def train_times(self) -> Dict[str, float]:
        for model in self.models.values():
            model.train()
        return self._median_times({name: self._train_step_fn(m) for name, m in self.models.items()})

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
                result[name] = saved_tensor_bytes(lambda: model(self.x), ignore=model.parameters())[0]
        return result

    def inference_times(self) -> Dict[str, float]:
        first_order, adapted = self.models['first_order'], self.models['adapted']
        variants = {'first_order': first_order, 'adapted': adapted,
                    'exported': export_for_inference(adapted)}
        if self.args.compile:
            variants['first_order_compiled'] = torch.compile(copy.deepcopy(first_order).eval())
            variants['exported_compiled'] = export_for_inference(adapted, compile=True)
        for model in variants.values():
            model.eval()
        with torch.inference_mode():
            expected = _outputs(adapted(self.x))
            exported = _outputs(variants['exported'](self.x))
            error = max((a.float() - b.float()).abs().max().item() for a, b in zip(expected, exported))

            def infer(model):
                def run():
                    with self.autocast():
                        model(self.x)
                return run

            times = self._median_times({name: infer(m) for name, m in variants.items()})
        times['export_max_abs_diff'] = error
        return times

    def flops(self) -> Dict[str, int]:
        """Forward FLOPs (eval) and training forward+backward FLOPs (memory-efficient)."""
        counts = {}
        for name in ('first_order', 'adapted'):
            model = self.models[name]
            model.eval()
            with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter, torch.no_grad():
                model(self.x)
            counts[f'{name}_forward'] = counter.get_total_flops()
            model.train()
            with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
                _loss(model(self.x)).backward()
            model.zero_grad(set_to_none=True)
            counts[f'{name}_train'] = counter.get_total_flops()
        return counts

    def params(self) -> Dict[str, int]:
        return {name: sum(p.numel() for p in self.models[name].parameters())
                for name in ('first_order', 'adapted')}


def _ratio(value: float, base: float, goal: Optional[float] = None) -> str:
    text = f'{value / base:.3f}×'
    if goal is not None:
        text += ' ✓' if value / base <= goal else ' ✗'
    return text


def measure(name: str, builder, targets, args, dtype: str) -> Dict[str, str]:
    bench = Bench(builder, targets, args, dtype)
    params, flops = bench.params(), bench.flops()
    saved = bench.saved_bytes()
    train = bench.train_times()
    infer = bench.inference_times()
    row = {
        'model': name,
        'precision': 'bf16 autocast' if dtype == 'bf16' else 'fp32',
        'params': f'+{100 * (params["adapted"] / params["first_order"] - 1):.2f}%',
        'FLOPs fwd / train': (f'{_ratio(flops["adapted_forward"], flops["first_order_forward"])} / '
                              f'{_ratio(flops["adapted_train"], flops["first_order_train"])}'),
        'first-order step': f'{1e3 * train["first_order"]:.0f} ms',
        'step (mem-eff)': _ratio(train['adapted'], train['first_order'], GOALS['step']),
        'step (plain bwd)': _ratio(train['adapted_plain_backward'], train['first_order']),
        'saved act. (mem-eff)': _ratio(saved['adapted'], saved['first_order'], GOALS['saved']),
        'saved act. (plain bwd)': _ratio(saved['adapted_plain_backward'], saved['first_order']),
        'infer (adapted)': _ratio(infer['adapted'], infer['first_order']),
        'infer (exported)': _ratio(infer['exported'], infer['first_order'], GOALS['infer']),
        'export max abs diff': f'{infer["export_max_abs_diff"]:.1e}',
    }
    if args.compile:
        row['infer compiled (exported vs first-order)'] = _ratio(
            infer['exported_compiled'], infer['first_order_compiled'], GOALS['infer'])
    if bench.device.type == 'cuda':
        peak = bench.peak_memory()
        row['peak mem (mem-eff / plain)'] = (f'{_ratio(peak["adapted"], peak["first_order"])} / '
                                             f'{_ratio(peak["adapted_plain_backward"], peak["first_order"])}')
    print(row, flush=True)
    return row


def _device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads'


INTRO = f"""# Adapter benchmarks

Written by `tools/benchmark_adapters.py` (see its docstring for the method). Adapters:
rank {ADAPTER['rank']}, k={ADAPTER['kernel_size']}, d={ADAPTER['dilation']}, quadratic
kernel, on every depthwise conv of ConvNeXt-T and every bottleneck 3x3 conv of ResNet-50.
Ratios are adapted / first-order, same process, medians of interleaved repeats.

Goals (SPEC §6): train step ≤ {GOALS['step']:.2f}×, saved activations ≤ {GOALS['saved']:.2f}×
(fp32 and autocast), inference after export ≤ {GOALS['infer']:.2f}× (✓ met, ✗ missed).

* *FLOPs train* counts one forward+backward; with the memory-efficient backward it
  includes the branch recompute.
* *saved act.*: bytes autograd saves in a training forward, each storage once, the
  model's parameters excluded (autocast's low-precision weight copies are counted).
* *step*: forward + backward + AdamW over all parameters (joint fine-tuning, the
  costlier stage). *plain bwd*: the same adapters with `memory_efficient=False`.
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
    parser.add_argument('--dtype', nargs='+', choices=['fp32', 'bf16'], default=['fp32', 'bf16'])
    parser.add_argument('--models', nargs='+', choices=list(ZOOS['mmpretrain']), default=list(ZOOS['mmpretrain']))
    parser.add_argument('--zoo', choices=list(ZOOS), default='mmpretrain')
    parser.add_argument('--compile', action='store_true', help='also time torch.compile inference')
    parser.add_argument('--out', default='docs/benchmarks.md')
    parser.add_argument('--append', action='store_true', help='add a section to --out')
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True

    rows = [measure(name, *ZOOS[args.zoo][name], args, dtype) for name in args.models for dtype in args.dtype]
    header = list(rows[0])
    for row in rows[1:]:
        header += [key for key in row if key not in header]
    table = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    table += ['| ' + ' | '.join(row.get(key, '') for key in header) + ' |' for row in rows]
    section = (f'## {_device_name(device)} — torch {torch.__version__}, {args.zoo} models, '
               f'batch {args.batch_size}, {args.image_size}², {args.repeats} repeats, '
               f'{datetime.date.today().isoformat()}\n\n' + '\n'.join(table) + '\n')
    print(section)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if args.append and osp.exists(args.out):
        with open(args.out, 'a', encoding='utf-8') as f:
            f.write('\n' + section)
    else:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(INTRO + '\n' + section)


if __name__ == '__main__':
    main()
