"""What ``tools/train.py`` and ``tools/test.py`` share: the mm-standard flags
and config handling of mmdet's own tools."""

import argparse
import glob
import json
import os
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the dir to save logs, models and metrics')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs, e.g. '
        'train_cfg.max_iters=100 or key="[a,b]"',
    )
    parser.add_argument(
        '--launcher',
        default='none',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        help='job launcher',
    )
    # torch.distributed.launch passes --local-rank (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(args: argparse.Namespace) -> Config:
    """The config with ``--cfg-options``, ``--launcher`` and ``--work-dir``
    applied (work dir: CLI > config > ``./work_dirs/<config name>``)."""
    if not osp.isfile(args.config):
        raise SystemExit(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def prepare_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on machines without CUDA.

    mmengine 0.10.7 assumes one GPU per process: ``init_dist`` calls
    ``torch.cuda.set_device`` and the default DDP wrapper gets
    ``device_ids=[local_rank]``. Without CUDA, the process group is started
    here with gloo (the Runner skips ``init_dist`` for an initialised group)
    and the model is wrapped with ``device_ids=None``, as DDP requires for
    CPU modules.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available() or torch_dist.is_initialized():
        return
    if cfg.launcher != 'pytorch':
        raise SystemExit(
            f'--launcher {cfg.launcher} needs CUDA; on CPU use --launcher pytorch under torchrun'
        )
    torch_dist.init_process_group(backend='gloo')
    wrapper = dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False),
    )
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def build_runner(cfg: Config) -> Runner:
    prepare_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def close_distributed() -> None:
    """End a torchrun job cleanly: wait for every rank, then shut the process
    group down before the interpreter exits. Left to interpreter teardown
    (mmdet's tools do that), a gloo rank that had finished its work was seen
    to abort in C++ ("terminate called without an active exception",
    SIGABRT), which fails the whole torchrun job."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def latest_metrics(work_dir: str, key: str) -> dict:
    """The newest metrics record holding ``key`` that mmengine's LoggerHook
    wrote under ``work_dir``: ``<timestamp>/<timestamp>.json`` for a test
    run (one JSON object), ``<timestamp>/vis_data/*.json`` for training
    (one record per line)."""
    paths = glob.glob(osp.join(work_dir, '*', '*.json')) + glob.glob(
        osp.join(work_dir, '*', 'vis_data', '*.json')
    )
    for path in sorted(paths, key=osp.getmtime, reverse=True):
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        for record in reversed(records):
            if key in record:
                return record
    raise FileNotFoundError(f'no {key} in the logs under {work_dir}')
