"""Command line of the adapter benchmark (``tools/benchmark_adapters.py``)."""

import argparse
import datetime
import os
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .detector import detector_row
from .markdown import (
    FROZEN_LEGEND,
    FROZEN_SECTION,
    device_name,
    insert_section,
    intro,
    markdown_table,
)
from .placement import PLACEMENTS_TIMED, placement_rows, pruned_rows
from .tables import frozen_row, measure
from .zoo import AUTOCAST_DTYPES, ZOOS

DESCRIPTION = 'Cost of quadratic adapters against the first-order backbone, written as markdown.'
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_DETECTOR = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_qnv2-r18_fpn_shapes.py')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, help='CPU threads (torch.set_num_threads)')
    parser.add_argument(
        '--clock',
        choices=['cpu', 'wall'],
        help='process CPU time or wall time (default: cpu on CPU, wall on CUDA)',
    )
    parser.add_argument(
        '--dtype', nargs='+', choices=list(AUTOCAST_DTYPES), default=['fp32', 'bf16']
    )
    parser.add_argument(
        '--models', nargs='+', choices=list(ZOOS['mmpretrain']), default=list(ZOOS['mmpretrain'])
    )
    parser.add_argument('--zoo', choices=list(ZOOS), default='mmpretrain')
    parser.add_argument(
        '--compile', action='store_true', help='also time torch.compile train and inference'
    )
    parser.add_argument('--no-placement', action='store_true', help='skip the placement table')
    parser.add_argument('--no-detector', action='store_true', help='skip the Mask R-CNN iteration')
    parser.add_argument('--no-pruned', action='store_true', help='skip the pruned placements table')
    parser.add_argument(
        '--detector-config',
        nargs='+',
        default=[DEMO_DETECTOR],
        help='detector configs to time (one row each)',
    )
    parser.add_argument(
        '--detector-img-size',
        type=int,
        help="side of the generated images (default: the config's img_size, else 800)",
    )
    parser.add_argument('--detector-repeats', type=int, default=10)
    parser.add_argument('--out', default='docs/benchmarks.md')
    parser.add_argument('--append', action='store_true', help='add a section to --out')
    parser.add_argument(
        '--frozen',
        action='store_true',
        help='only the frozen-regime table (primary weights frozen; quadratic '
        'adapters, LoRA, first-order), written into --out as its section '
        f'"{FROZEN_SECTION[3:]}" right after the introduction',
    )
    parser.add_argument(
        '--peft-path',
        help="a directory holding PEFT (pip install --target): PEFT's own "
        'LoRA as a cross-check in the frozen-regime table',
    )
    return parser.parse_args(argv)


def _rows_per_model(
    rows: Callable[..., List[Dict[str, str]]], args: argparse.Namespace
) -> List[Dict[str, str]]:
    """``rows(name, builder, targets, args)`` for every model of ``--models``, in turn."""
    return [row for name in args.models for row in rows(name, *ZOOS[args.zoo][name], args)]


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    clock = args.clock or ('cpu' if device.type == 'cpu' else 'wall')
    args.clock_fn = time.process_time if clock == 'cpu' else time.perf_counter

    started = time.perf_counter()
    if args.frozen:
        write_frozen_section(args, clock, started)
        return
    rows = [
        measure(name, *ZOOS[args.zoo][name], args, dtype)
        for name in args.models
        for dtype in args.dtype
    ]
    section = (
        f'## {device_name(device)} — torch {torch.__version__}, {args.zoo} models, '
        f'batch {args.batch_size}, {args.image_size}², {args.repeats} repeats, '
        f'{clock} clock, {datetime.date.today().isoformat()}\n\n' + markdown_table(rows) + '\n'
    )
    if not args.no_placement:
        section += (
            f'\n### Cost per placement ({args.dtype[0]}, d=2 for k=3; step and inference '
            f'timed for {len(PLACEMENTS_TIMED)} rows per model)\n\n'
            + markdown_table(_rows_per_model(placement_rows, args))
            + '\n'
        )
    if not args.no_pruned:
        section += (
            f'\n### Pruned placements ({args.dtype[0]}): exported inference, the '
            'most expensive adapters off first\n\n'
            + markdown_table(_rows_per_model(pruned_rows, args))
            + '\n'
        )
    if not args.no_detector:
        section += (
            f'\n### Whole detector: train iteration, {args.detector_repeats} repeats\n\n'
            + markdown_table([detector_row(config, args) for config in args.detector_config])
            + '\n'
        )
    section += f'\nBenchmark wall time: {(time.perf_counter() - started) / 60:.1f} min.\n'
    print(section)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if args.append and osp.exists(args.out):
        with open(args.out, 'a', encoding='utf-8') as f:
            f.write('\n' + section)
    else:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(intro(device.type) + '\n' + section)


def write_frozen_section(args: argparse.Namespace, clock: str, started: float) -> None:
    """The frozen-regime table, written into ``args.out`` (see :func:`insert_section`)."""
    rows = [
        frozen_row(name, *ZOOS[args.zoo][name], args, dtype)
        for name in args.models
        for dtype in args.dtype
    ]
    section = (
        f'{FROZEN_SECTION}\n\n'
        f'{device_name(torch.device(args.device))}, torch {torch.__version__}, '
        f'{args.zoo} models, batch {args.batch_size}, {args.image_size}², '
        f'{args.repeats} repeats, {clock} clock '
        f'(`tools/benchmark_adapters.py --frozen`).\n\n'
        + FROZEN_LEGEND
        + '\n'
        + markdown_table(rows)
        + f'\n\nBenchmark wall time: {(time.perf_counter() - started) / 60:.1f} min.\n'
    )
    print(section)
    page = ''
    if osp.exists(args.out):
        with open(args.out, encoding='utf-8') as f:
            page = f.read()
    with open(args.out, 'w', encoding='utf-8') as f:
        f.write(insert_section(page or intro(torch.device(args.device).type), section))
