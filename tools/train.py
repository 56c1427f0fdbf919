"""Train a QuadraNet V2 detector or classifier (mmdet's tools/train.py)."""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import quadra_mm  # noqa: E402,F401  (registers modules, torch 2.14 compat)
from quadra_mm.cli import add_common_args, build_runner, close_distributed, load_config, parse  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper)'
    )
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='scale the lr to the actual batch size'
    )
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or without a path from the '
        'latest checkpoint in the work dir',
    )
    add_common_args(parser)
    args = parse(parser)

    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit(
                '--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=...)` in the config'
            )
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    build_runner(cfg).train()
    close_distributed()


if __name__ == '__main__':
    main()
