"""One run of a comparison, in its own process: train a config through
mmengine's ``Runner`` (validating at the config's ``val_interval``), test the
final model once on the test split, count its parameters and FLOPs, and write
the result atomically (rank 0).

    python -m quadra_mm.comparison.worker RUN_CONFIG RESULT_JSON --fingerprint KEY
    python -m torch.distributed.run --nproc_per_node N -m quadra_mm.comparison.worker \\
        RUN_CONFIG RESULT_JSON --fingerprint KEY --launcher pytorch
    srun ... python -u -m quadra_mm.comparison.worker ... --launcher slurm

as ``tools/train.py`` runs under ``tools/dist_train.sh`` / ``slurm_train.sh``.
"""

import argparse
import os
import time
from typing import Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

import quadra_mm  # noqa: F401  (registers the modules; FLOPs of the adapters)
from quadra_mm.cli import build_runner, close_distributed
from quadra_mm.importance import count_flops, flop_input
from quadra_mm.ops import is_adapter_param_name

from .cache import write_json

__all__ = ['RunRecorder', 'run']


class RunRecorder(Hook):
    """What a run reports besides its metrics: the last val metrics, the
    mean time of a training step (forward, backward, optimizer; data loading
    excluded) and which parameters training changed."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.val: Optional[Dict[str, float]] = None
        self.step_seconds: List[float] = []
        self._start = 0.0
        self._initial: Dict[str, torch.Tensor] = {}
        self.trained: Optional[int] = None
        self.trained_adapter: Optional[int] = None

    @staticmethod
    def _model(runner) -> torch.nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train(self, runner) -> None:
        self._initial = {
            name: p.detach().clone() for name, p in self._model(runner).named_parameters()
        }

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.step_seconds.append(time.perf_counter() - self._start)

    def after_train(self, runner) -> None:
        changed = {
            name: p.numel()
            for name, p in self._model(runner).named_parameters()
            if not torch.equal(p.detach(), self._initial[name])
        }
        self.trained = sum(changed.values())
        self.trained_adapter = sum(n for name, n in changed.items() if is_adapter_param_name(name))
        self._initial = {}

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if metrics:
            self.val = {k: float(v) for k, v in metrics.items()}


def run(cfg: Config) -> Optional[dict]:
    """Train ``cfg``, test the final model; the result on rank 0 (None on
    the other ranks)."""
    runner = build_runner(cfg)
    recorder = RunRecorder()
    runner.register_hook(recorder)
    start = time.time()
    runner.train()
    seconds = time.time() - start
    print(f'comparison worker: trained in {seconds:.1f} s', flush=True)
    if recorder.val is None:
        raise RuntimeError(
            f'{cfg.filename}: training never validated; the '
            'comparison chooses on the val metric (train_cfg.val_interval)'
        )
    test = {k: float(v) for k, v in runner.test().items()}
    if get_rank() != 0:
        return None
    model = RunRecorder._model(runner)
    model.eval()
    with torch.no_grad():
        flops = count_flops(model, *flop_input(model, runner.test_dataloader))['']
    steps = recorder.step_seconds[1:] or recorder.step_seconds  # first: warm-up
    return dict(
        val=recorder.val,
        test=test,
        seconds=round(seconds, 2),
        step_time=sum(steps) / len(steps) if steps else float('nan'),
        params=sum(p.numel() for p in model.parameters()),
        adapter_params=sum(
            p.numel() for name, p in model.named_parameters() if is_adapter_param_name(name)
        ),
        trained_params=recorder.trained,
        trained_adapter_params=recorder.trained_adapter,
        flops=int(flops),
        world_size=get_world_size(),
        test_images=len(runner.test_dataloader.dataset),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the run config (written by the comparison)')
    parser.add_argument('result', help='where the result JSON goes (rank 0)')
    parser.add_argument('--fingerprint', required=True, help='the cache key stored with the result')
    parser.add_argument('--launcher', default='none', choices=['none', 'pytorch', 'slurm'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    try:
        result = run(cfg)
        if result is not None:
            write_json(args.result, dict(fingerprint=args.fingerprint, result=result))
    finally:
        close_distributed()


if __name__ == '__main__':
    main()
