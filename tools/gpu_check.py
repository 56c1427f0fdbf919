"""The GPU half of ``tools/gpu_check.sh``: AMP training steps, the exported/Triton
inference check and a profile of one adapted step, on torch alone (no OpenMMLab).

    python tools/gpu_check.py --out DIR [--dry-run]

Writes ``DIR/gpu_check.json`` (every number below) and ``DIR/profile.txt``. With
``--dry-run`` the same steps run on the CPU at tiny sizes, so that CI keeps this file
working on the machine without a GPU.

Steps:

1. ``amp``: fp16 (with ``torch.amp.GradScaler``) and bf16 autocast training of timm's
   ConvNeXt-T and torchvision's ResNet-50 with the adapters of
   ``benchmark_adapters.py --zoo timm`` and a trained-looking ``U``, on random data:
   losses finite and no step skipped by the scaler once its scale has settled (the
   first half of the iterations is its calibration from 65536; 256 in the dry run),
   once as the data
   come and once with the input of the last stage scaled (a forward pre-hook) so
   that its max exceeds 256, as in pretrained ConvNeXts (the measured max is recorded).
2. ``export``: the exported model (the Triton kernel on CUDA) against the adapted one,
   bf16 and fp32.
3. ``profile``: ``torch.profiler`` of one adapted bf16 train step, the 15 kernels with
   the most device time, and whether the step is host-bound (device busy less than
   half of its wall time) or kernel-bound.
"""

import argparse
import json
import os.path as osp
import sys
import time
from typing import Dict

import torch
from torch import nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from benchmarking import ZOOS  # noqa: E402

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers  # noqa: E402
from quadra_mm.deploy import export_for_inference  # noqa: E402

# The module whose input is "entering the last stage", per model.
LAST_STAGE = {'ConvNeXt-T': 'stages.3', 'ResNet-50': 'layer4'}


def adapted_model(name: str, device: torch.device) -> nn.Module:
    builder, targets = ZOOS['timm'][name]
    torch.manual_seed(0)
    model = builder()
    inject_quadratic_adapters(model, targets)
    with torch.no_grad():  # a trained-looking U, so the branch is on
        for _, layer in quadratic_layers(model):
            nn.init.normal_(layer.quad_u.weight, std=1e-2)
    return model.to(device).to(memory_format=torch.channels_last)


def last_stage_input_max(model: nn.Module, name: str, x: torch.Tensor) -> float:
    seen = []
    handle = model.get_submodule(LAST_STAGE[name]).register_forward_pre_hook(
        lambda _, args: seen.append(args[0].detach().abs().max().item())
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def amp_training(name: str, dtype: torch.dtype, stage_max: float, args, device) -> Dict:
    """``stage_max``: scale the last stage's input to about this max (0: leave it)."""
    model = adapted_model(name, device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    # The dry run starts the scaler lower, so that it settles within its few steps.
    init_scale = 2.0**16 if device.type == 'cuda' else 2.0**8
    scaler = torch.amp.GradScaler(
        device.type, init_scale=init_scale, enabled=dtype == torch.float16
    )
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(
        args.batch_size, 3, args.image_size, args.image_size, device=device, generator=generator
    ).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (args.batch_size,), device=device, generator=generator)
    input_scale = 1.0
    if stage_max:
        # The stems normalise (LayerNorm / BN): scaling the images would change nothing.
        input_scale = stage_max / last_stage_input_max(model, name, x)
        model.get_submodule(LAST_STAGE[name]).register_forward_pre_hook(
            lambda _, inputs: (inputs[0] * input_scale,)
        )
    stage_input = last_stage_input_max(model, name, x)
    losses, skipped, late_skips = [], 0, 0
    for iteration in range(args.iterations):
        with torch.autocast(device.type, dtype=dtype):
            loss = nn.functional.cross_entropy(model(x).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # The scaler lowers its scale exactly when it skipped the step (inf/NaN grads).
        skip = scaler.is_enabled() and scaler.get_scale() < scale
        skipped += skip
        late_skips += skip and iteration >= args.iterations // 2
        losses.append(loss.item())
    finite = all(map(lambda v: v == v and abs(v) != float('inf'), losses))
    return dict(
        model=name,
        dtype=str(dtype).split('.')[-1],
        last_stage_scale=input_scale,
        last_stage_input_max=stage_input,
        iterations=args.iterations,
        losses_finite=finite,
        skipped_steps=int(skipped),
        late_skipped_steps=int(late_skips),
        final_loss_scale=scaler.get_scale() if scaler.is_enabled() else None,
        first_loss=losses[0],
        last_loss=losses[-1],
        # In the dry run ResNet-50's layer4 is 1x1 (32² inputs): its BatchNorm
        # normalises 2 values per channel and the CPU fp16 gradients overflow at
        # every loss scale, the first-order model's too (6 of 6 steps skipped,
        # measured): skips are judged on the GPU only.
        ok=finite and (not late_skips or args.dry_run),
    )


def export_check(name: str, dtype, args, device) -> Dict:
    model = adapted_model(name, device).eval()
    x = torch.randn(2, 3, args.image_size, args.image_size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    exported = export_for_inference(model)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        expected, out = model(x).float(), exported(x).float()
    diff = (out - expected).abs().max().item()
    tolerance = 5e-2 * expected.abs().max().item() if dtype else 1e-3
    return dict(
        model=name,
        dtype=str(dtype or torch.float32).split('.')[-1],
        triton=device.type == 'cuda',
        max_abs_diff=diff,
        tolerance=tolerance,
        ok=diff <= tolerance,
    )


def profile_step(args, device, out_dir: str) -> Dict:
    from torch.profiler import ProfilerActivity, profile

    model = adapted_model('ConvNeXt-T', device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device).contiguous(
        memory_format=torch.channels_last
    )

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(x).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        step()
        if device.type == 'cuda':
            torch.cuda.synchronize()
    wall_s = time.perf_counter() - start
    sort = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    table = prof.key_averages().table(sort_by=sort, row_limit=15)
    with open(osp.join(out_dir, 'profile.txt'), 'w') as f:
        f.write(table)
    events = prof.key_averages()
    if device.type == 'cuda':
        device_s = sum(e.self_device_time_total for e in events) / 1e6
    else:
        device_s = sum(e.self_cpu_time_total for e in events) / 1e6
    busy = device_s / wall_s
    return dict(
        wall_ms=wall_s * 1e3,
        device_busy_ms=device_s * 1e3,
        busy_fraction=busy,
        verdict='kernel-bound' if busy >= 0.5 else 'host-bound',
        ok=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--dry-run', action='store_true', help='tiny sizes on the CPU')
    args = parser.parse_args()
    if args.dry_run:
        device = torch.device('cpu')
        args.batch_size, args.image_size, args.iterations = 2, 32, 6
    else:
        if not torch.cuda.is_available():
            raise SystemExit('gpu_check.py: no CUDA device (use --dry-run on a CPU machine)')
        device = torch.device('cuda')
        args.batch_size, args.image_size, args.iterations = 32, 224, 50
    results: Dict = dict(
        device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
        torch=torch.__version__,
        dry_run=args.dry_run,
        amp=[],
        export=[],
    )
    for name in LAST_STAGE:
        for dtype in (torch.float16, torch.bfloat16):
            for stage_max in (0, 512):
                results['amp'].append(amp_training(name, dtype, stage_max, args, device))
                print(json.dumps(results['amp'][-1]), flush=True)
        for dtype in (None, torch.bfloat16):
            results['export'].append(export_check(name, dtype, args, device))
            print(json.dumps(results['export'][-1]), flush=True)
    results['profile'] = profile_step(args, device, args.out)
    print(json.dumps(results['profile']), flush=True)
    big = [r for r in results['amp'] if r['last_stage_scale'] != 1]
    results['activations_above_256'] = all(r['last_stage_input_max'] > 256 for r in big)
    results['ok'] = all(r['ok'] for r in results['amp'] + results['export'])
    with open(osp.join(args.out, 'gpu_check.json'), 'w') as f:
        json.dump(results, f, indent=1)
    return 0 if results['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
