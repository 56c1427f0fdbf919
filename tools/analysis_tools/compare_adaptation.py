"""Does quadratic adaptation help on your data? Compare adaptation recipes
(arms) derived from one mmdet / mmpretrain config whose backbone is
``QuadraNetV2``, on the config's own data, schedule and checkpoints.

    python tools/analysis_tools/compare_adaptation.py CONFIG
        [--arms full-ft lora qnv2-adapters qnv2-stages ...] [--seeds 0 1 2]
        [--lrs 1e-4 3e-4 1e-3] [--metric KEY] [--reference ARM]
        [--u-lr-mult 16] [--work-dir DIR] [--workers N]
        [--launcher none|pytorch|slurm] [--nproc N] [--partition P]
        [--cfg-options KEY=VALUE ...]

Arms (edits of the loaded config; ``quadra_mm.comparison.arms``): ``full-ft``,
``norms-head``, ``lora``, ``qnv2-adapters``, ``qnv2-stages``, ``qnv2-u-lr``,
and arms of your own, ``name:key=value,key=value`` (the config with those
overrides). With ``--lrs``, each arm trains its first seed at every lr and
keeps the one with the best last val metric; every seed then trains at it and
is tested once on the test split. Each run is a ``Runner`` in its own process
(``--launcher pytorch``: ``--nproc`` processes by ``torch.distributed.run``,
as ``tools/dist_train.sh``; ``slurm``: ``srun``, as ``tools/slurm_train.sh``),
its result cached under ``--work-dir`` by its config's fingerprint: run the
command again (after an interruption, or with one more seed) and only what is
missing trains. Writes ``report.md``, ``results.json`` and ``comparison.png``
to the work dir (default ``work_dirs/compare_adaptation/<config name>``).
"""

import argparse
import os.path as osp
import shlex
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402

from quadra_mm.comparison import (  # noqa: E402
    BUILTIN_ARMS,
    DEFAULT_ARMS,
    ArmError,
    Launch,
    RunFailed,
    prepare,
    run_comparison,
    write_outputs,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='an mmdet / mmpretrain config with a QuadraNetV2 backbone')
    parser.add_argument(
        '--arms',
        nargs='+',
        default=list(DEFAULT_ARMS),
        help=f'built-in arms {sorted(BUILTIN_ARMS)} or name:key=value,... '
        f'(default: {" ".join(DEFAULT_ARMS)})',
    )
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        default=[0, 1, 2],
        help='randomness.seed of the runs (default 0 1 2)',
    )
    parser.add_argument(
        '--lrs',
        type=float,
        nargs='+',
        help='optim_wrapper.optimizer.lr values swept per arm on the first '
        "seed (default: the config's lr, no sweep)",
    )
    parser.add_argument(
        '--metric',
        help='the val metric that chooses the lr and decides the '
        "verdicts (default: the val evaluator's first)",
    )
    parser.add_argument(
        '--reference',
        help='the arm the others are paired against '
        '(default full-ft if compared, else the first arm)',
    )
    parser.add_argument(
        '--u-lr-mult',
        type=float,
        default=16.0,
        help='lr multiplier of U in the qnv2-u-lr arm (default 16)',
    )
    parser.add_argument(
        '--work-dir',
        help='runs, cache and report (default work_dirs/compare_adaptation/<config name>)',
    )
    parser.add_argument('--workers', type=int, default=1, help='runs at a time (default 1)')
    parser.add_argument('--launcher', default='none', choices=['none', 'pytorch', 'slurm'])
    parser.add_argument(
        '--nproc',
        type=int,
        default=1,
        help='processes (GPUs) per run with --launcher pytorch / slurm',
    )
    parser.add_argument('--partition', help='slurm partition (--launcher slurm)')
    parser.add_argument(
        '--port',
        type=int,
        default=29500,
        help='master port of --launcher pytorch (concurrent runs count up)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings for every arm, key=value pairs',
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'compare_adaptation', osp.splitext(osp.basename(args.config))[0]
    )
    try:
        comparison = prepare(
            args.config,
            args.arms,
            args.seeds,
            work_dir,
            lrs=args.lrs,
            metric=args.metric,
            reference=args.reference,
            cfg_options=args.cfg_options,
            launch=Launch(args.launcher, args.nproc, args.partition, args.port),
            u_lr_mult=args.u_lr_mult,
            workers=args.workers,
        )
        comparison.command = shlex.join(
            [
                'python',
                'tools/analysis_tools/compare_adaptation.py',
                *(sys.argv[1:] if argv is None else argv),
            ]
        )
        results = run_comparison(comparison)
    except (ArmError, RunFailed) as error:
        raise SystemExit(f'compare_adaptation.py: {error}') from None
    print(f'report: {write_outputs(results, work_dir)}')


if __name__ == '__main__':
    main()
