"""One run of the study, as a worker process runs it: a training, a test or a
pruning (part 6), each result cached next to its checkpoint and keyed by the
config's fingerprint (:mod:`quadra_mm.comparison.cache`), so that a stopped
study continues and a changed config is run again."""

import copy
import json
import math
import os.path as osp
import time
from typing import Callable, List, Tuple

from mmengine.config import Config

from quadra_mm.cli import build_runner
from quadra_mm.comparison.cache import fingerprint, load_cached, write_json
from quadra_mm.ops import is_adapter_param_name

from .configs import quiet
from .pruning import prune_and_test, result_path

__all__ = ['cached', 'train', 'run_path', 'test', 'pruned_and_tested']


def _read_scalars(log_dir: str) -> List[dict]:
    path = osp.join(log_dir, 'vis_data', 'scalars.json')
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cached(path: str, cfg: Config, compute: Callable[[], object]):
    """``compute()``, or what it returned for the same config before.

    Each run's result is kept next to its checkpoint (``path``), keyed by
    :func:`quadra_mm.comparison.cache.fingerprint`: a study stopped half-way (or split over several
    processes with ``--parts``) continues where it stopped, and a changed
    config is run again."""
    key = fingerprint(cfg)
    saved = load_cached(path, key)
    if saved is not None:
        return saved
    result = compute()
    write_json(path, dict(fingerprint=key, result=result))
    return result


def train(cfg: Config, metric: str) -> dict:
    """Train ``cfg`` (or reuse its earlier result); the final checkpoint,
    the val curve of ``metric`` and the mean train-step time."""
    return cached(run_path(cfg), cfg, lambda: _train(cfg, metric))


def run_path(cfg: Config) -> str:
    """Where the cached result of training ``cfg`` is kept."""
    return osp.join(cfg.work_dir, 'study_run.json')


def _train(cfg: Config, metric: str) -> dict:
    start = time.time()
    runner = build_runner(cfg)
    runner.train()
    seconds = time.time() - start
    model = runner.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    adapter = sum(p.numel() for name, p in model.named_parameters() if is_adapter_param_name(name))
    records = _read_scalars(runner.log_dir)
    curve = [(r['step'], r[metric]) for r in records if metric in r]
    times = [r['time'] for r in records if 'loss' in r and 'time' in r]
    iters = cfg.train_cfg.get('max_iters')
    ckpt = osp.join(cfg.work_dir, f'iter_{iters}.pth') if iters else None
    result = dict(
        curve=curve,
        final=curve[-1][1] if curve else math.nan,
        seconds=round(seconds, 1),
        step_time=sum(times) / len(times) if times else math.nan,
        trainable=trainable,
        adapter_params=adapter,
        records=[r for r in records if any(k.startswith('coco/') for k in r)],
        checkpoint=ckpt,
        work_dir=cfg.work_dir,
    )
    del runner, model
    return result


def test(cfg: Config, checkpoint: str, expected_len: int) -> float:
    """Top-1 of ``checkpoint`` on the test split of ``cfg``, after checking
    that split's size (mmpretrain's FashionMNIST quirk, SPEC section 4)."""
    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    quiet(cfg, osp.join(cfg.work_dir, 'test'))
    return cached(osp.join(cfg.work_dir, 'study_test.json'), cfg, lambda: _test(cfg, expected_len))


def _test(cfg: Config, expected_len: int) -> float:
    runner = build_runner(cfg)
    size = len(runner.test_dataloader.dataset)
    if size != expected_len:
        raise RuntimeError(
            f'test split of {cfg.filename} has {size} images, expected {expected_len}'
        )
    metrics = runner.test()
    del runner
    return float(metrics['accuracy/top1'])


def pruned_and_tested(
    cfg: Config, checkpoint: str, metric: str, reported: Tuple[str, ...], seed: int
) -> dict:
    """:func:`.pruning.prune_and_test` (or its earlier result for the same
    config and checkpoint), in a worker."""
    return cached(
        result_path(cfg.work_dir),
        cfg,
        lambda: prune_and_test(cfg, checkpoint, metric, reported, seed),
    )
