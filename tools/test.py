"""Test (and evaluate) a QuadraNet V2 model (mmdet's tools/test.py)."""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import quadra_mm  # noqa: E402,F401  (registers modules, torch 2.14 compat)
from quadra_mm.cli import add_common_args, build_runner, close_distributed, load_config, parse  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions to this .pkl file')
    parser.add_argument('--show', action='store_true', help='show the predictions in a window')
    parser.add_argument(
        '--show-dir',
        help="save drawn predictions here (relative to the run's "
        'work_dir/timestamp dir, as mmdet does)',
    )
    parser.add_argument('--wait-time', type=float, default=2, help='display time of --show (s)')
    add_common_args(parser)
    args = parse(parser)

    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        from mmdet.engine.hooks.utils import trigger_visualization_hook

        cfg = trigger_visualization_hook(cfg, args)

    runner = build_runner(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit(f'--out must be a .pkl file, got {args.out}')
        from mmdet.evaluation import DumpDetResults

        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()
    close_distributed()


if __name__ == '__main__':
    main()
