"""Logging of how much the quadratic terms contribute, per backbone stage."""

import math
from collections import defaultdict
from typing import Dict, List, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from quadra_mm.adapters import quadratic_layers
from quadra_mm.registry import register_hook


@register_hook
class QuadraticStatsHook(Hook):
    """Every ``interval`` training iterations, log per backbone stage:

    * ``qnv2_stage{s}_ratio``: ``||quadratic term|| / ||primary term||``
      over that stage's quadratic layers (L2 norms of their outputs in the
      iteration's forward pass, summed in quadrature);
    * ``qnv2_stage{s}_u_norm`` and ``qnv2_stage{s}_ab_norm``: Frobenius
      norms of the adapters' output projection ``U`` and of ``A``, ``B``.

    The values go to the runner's message hub as ``train/`` scalars, so
    the LoggerHook prints them and sends them to every visualizer backend
    (TensorBoard, W&B, ...). Layers without a stage are reported as
    ``stageall``. The names hold no ``/``: in a log line, mmdet's
    ``analyze_logs.py`` takes a key with ``/`` for a validation metric
    (``coco/bbox_mAP``) and drops the keys after it (``iter``, ``epoch``).

    Args:
        interval (int): log every ``interval`` iterations.
    """

    priority = 'NORMAL'  # before the LoggerHook (BELOW_NORMAL) reads them

    def __init__(self, interval: int = 50) -> None:
        if not isinstance(interval, int) or interval <= 0:
            raise ValueError(
                f'QuadraticStatsHook: `interval` must be a positive int, got {interval!r}'
            )
        self.interval = interval

    def _layers(self, runner) -> List[Tuple[str, object]]:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return list(quadratic_layers(model))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            for _, layer in self._layers(runner):
                layer.record_stats = True

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        sums: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for _, layer in self._layers(runner):
            layer.record_stats = False
            stage = 'all' if layer.stage is None else str(layer.stage)
            acc = sums[stage]
            if layer.last_stats is not None:
                quadratic, primary = layer.last_stats
                acc['quadratic'] += float(quadratic) ** 2
                acc['primary'] += float(primary) ** 2
                layer.last_stats = None
            acc['u'] += float(layer.quad_u.weight.detach().norm()) ** 2
            acc['ab'] += (
                float(layer.quad_a.weight.detach().norm()) ** 2
                + float(layer.quad_b.weight.detach().norm()) ** 2
            )
        for stage, acc in sorted(sums.items()):
            tag = f'train/qnv2_stage{stage}'
            if acc['primary'] > 0:
                runner.message_hub.update_scalar(
                    f'{tag}_ratio', math.sqrt(acc['quadratic'] / acc['primary'])
                )
            runner.message_hub.update_scalar(f'{tag}_u_norm', math.sqrt(acc['u']))
            runner.message_hub.update_scalar(f'{tag}_ab_norm', math.sqrt(acc['ab']))
