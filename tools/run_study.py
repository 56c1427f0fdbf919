#!/usr/bin/env python
"""The adaptation study: does quadratic adaptation beat first-order adaptation
at the same budget? One command, real data (Fashion-MNIST), >= 3 seeds.

    .venv/bin/python tools/run_study.py                 # -> docs/study.md, docs/study/*.png
    .venv/bin/python tools/run_study.py --quick --out /tmp/study   # every arm, tiny subset
    .venv/bin/python tools/run_study.py --prepare-data  # only locate / un-gzip the data

Every run is an mmengine ``Runner`` built from a config of ``configs/study``
(or ``configs/demo``) with the project's ``quadra_mm.cli.build_runner``, as
``tools/train.py`` / ``tools/test.py`` build theirs, in one of ``--workers``
processes (default: one per CPU core, one torch thread each; every run is
seeded, so its result does not depend on which worker ran it). The protocol
(docs/study.md says it again next to the numbers):

1. Source: a first-order CIFAR-style ResNet-18 is pretrained on 5 classes,
   one source model per seed.
2. Targets: (a) ``heldout``: the 5 other classes; (b) ``shift``: the source
   classes through the non-linear "solarise + swirl" shift. Few labels per
   class, the same images for every arm of a seed.
3. Arms (:data:`ARMS`), equal iterations, batch and data. Each arm runs the
   same lr sweep on seed 0, keeps the lr with the best final val accuracy,
   runs the other seeds at that lr; the test split is scored once per run.
4. Kernels / ranks / placement on ``shift`` (adapters-only recipe, the lr of
   ``qnv2-adapters``), efficiency (QuadraNet from scratch, longer), and the
   demo detector, QNv2 vs a first-order twin with the same extra epochs.
5. Same task (``--parts same-task``, :mod:`study.same_task`): the paper's own
   experiment. A wider first-order ResNet pretrained on all ten classes for P
   steps, then E more steps per arm on the same task (continued first-order,
   QNv2 stages, QNv2 adapters, LoRA), and the quadratic network from scratch
   for P + several E steps, for the cost axis.

A part can run on its own and join an earlier run's results:
``tools/run_study.py --parts same-task --merge docs/study/results.json``.
"""

import argparse
import json
import os
import os.path as osp
import sys
from dataclasses import replace

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402
from study.arms import BUDGET_PART, PARTS  # noqa: E402
from study.report import write_report  # noqa: E402
from study.runner import Study  # noqa: E402
from study.scale import FULL, QUICK, TASKS  # noqa: E402

import quadra_mm  # noqa: E402,F401  (registers modules, torch 2.14 compat)
import quadra_mm.datasets.fashion_mnist  # noqa: E402,F401  (the dataset)
from quadra_mm.comparison.cache import write_json  # noqa: E402
from quadra_mm.comparison.executor import mmss  # noqa: E402
from quadra_mm.datasets import prepare_fashion_mnist  # noqa: E402

MERGED_PARTS = ('detection', 'same-task', 'pruning')


def merge_results(earlier: dict, new: dict, parts: list) -> dict:
    """``earlier`` with the results of ``parts`` taken from ``new``, and
    ``new``'s invocation (parts, wall time) added to ``earlier``'s list."""
    if earlier['scale']['name'] != new['scale']['name']:
        raise SystemExit(
            f'tools/run_study.py: --merge: a {new["scale"]["name"]} '
            f'run cannot join a {earlier["scale"]["name"]} one'
        )
    merged = dict(earlier)
    # part 3b's close pairs, per budget: those of the parts run now replace theirs
    close_pairs = dict(earlier.get('close_pairs', {}))
    for part in parts:
        if part in TASKS:
            merged['tasks'] = dict(earlier['tasks'], **{part: new['tasks'][part]})
            if part == 'shift':
                iters = str(new['scale']['iters'])
                close_pairs[iters] = new['close_pairs'][iters]
        elif part == BUDGET_PART:
            merged['budget'] = new['budget']
            iters = str(new['budget']['iters'])
            close_pairs[iters] = new['close_pairs'][iters]
        elif part in MERGED_PARTS:
            key = part.replace('-', '_')
            merged[key] = new[key]
        elif part != 'source':
            mergeable = TASKS + (BUDGET_PART,) + MERGED_PARTS
            raise SystemExit(
                f'tools/run_study.py: --merge takes the parts {mergeable}, not {part!r}'
            )
    merged['close_pairs'] = close_pairs
    merged['invocations'] = earlier.get(
        'invocations',
        [
            dict(
                parts='every other part',
                seconds=earlier['seconds'],
                finished=earlier['finished'],
                workers=earlier.get('workers', 1),
            )
        ],
    ) + [
        dict(
            parts=list(parts),
            seconds=new['seconds'],
            finished=new['finished'],
            workers=new['workers'],
        )
    ]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--quick', action='store_true', help='every arm on a tiny subset (a test, not a result)'
    )
    parser.add_argument(
        '--out', default=osp.join(ROOT, 'docs'), help='writes <out>/study.md and <out>/study/*.png'
    )
    parser.add_argument(
        '--work-dir', default=None, help='runs and checkpoints (default work_dirs/study[-quick])'
    )
    parser.add_argument(
        '--data',
        default=osp.join(ROOT, 'data', 'fashion_mnist'),
        help='where the un-gzipped Fashion-MNIST idx files go',
    )
    parser.add_argument(
        '--workers',
        type=int,
        default=os.cpu_count() or 1,
        help='processes that train in parallel (default: one per CPU core)',
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads per worker; 1 was faster than 2 on the shared '
        '2-core machine the study was run on',
    )
    parser.add_argument(
        '--parts',
        nargs='+',
        choices=PARTS,
        default=PARTS,
        help='run only these parts (their results are kept '
        'in --work-dir; the report needs all of them)',
    )
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        help='run only these seeds (with --parts, to split a study over processes)',
    )
    parser.add_argument(
        '--merge',
        metavar='RESULTS_JSON',
        help="add this invocation's parts to the results.json "
        'of an earlier run (its other parts kept, the parts '
        'run now replacing theirs) and write the report',
    )
    parser.add_argument(
        '--report-only',
        metavar='RESULTS_JSON',
        help='only (re)write the report from a results.json of an earlier run',
    )
    parser.add_argument(
        '--prepare-data', action='store_true', help='only locate and un-gzip Fashion-MNIST'
    )
    args = parser.parse_args()
    try:
        prepare_fashion_mnist(args.data)
    except FileNotFoundError as error:
        raise SystemExit(f'tools/run_study.py: {error}')
    if args.prepare_data:
        print(f'Fashion-MNIST ready in {args.data}')
        return
    scale = QUICK if args.quick else FULL
    if args.seeds:
        scale = replace(scale, seeds=tuple(args.seeds))
    torch.set_num_threads(args.threads)
    work = args.work_dir or osp.join(ROOT, 'work_dirs', 'study' + ('-quick' if args.quick else ''))
    os.chdir(ROOT)
    if args.report_only:
        with open(args.report_only) as f:
            results = json.load(f)
    else:
        results = Study(
            scale,
            osp.abspath(work),
            osp.abspath(args.data),
            args.parts,
            workers=args.workers,
            threads=args.threads,
        ).run(args.parts)
        seconds = results['seconds']
        if args.merge:
            with open(args.merge) as f:
                results = merge_results(json.load(f), results, args.parts)
        elif not set(TASKS) <= set(args.parts):
            print(
                f'parts {args.parts} done; the report needs both tasks '
                f'{TASKS} (finished runs are reused)'
            )
            return
        if 'detection' not in args.parts and not args.merge:
            results['detection']['note'] = "It was left out of this invocation's `--parts`."
        write_json(osp.join(work, 'results.json'), results)
    os.makedirs(args.out, exist_ok=True)
    report = write_report(results, args.out, data_dir=args.data)
    if not args.report_only:
        print(
            f'\nstudy ({scale.name}, parts {" ".join(args.parts)}) done in '
            f'{mmss(seconds)}: {report}'
        )
    else:
        print(f'report written: {report}')


if __name__ == '__main__':
    main()
