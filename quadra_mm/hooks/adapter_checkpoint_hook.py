"""Checkpoints of only what training changed, as PEFT users expect."""

import os.path as osp
from typing import Optional, Set

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import save_checkpoint

from quadra_mm.models.trained_checkpoint import (
    complete_trained_checkpoint,
    is_trained_checkpoint,
    load_base,
    trained_checkpoint,
)
from quadra_mm.registry import register_hook

from .exact_resume_hook import checkpoint_due

__all__ = ['AdapterCheckpointHook']


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@register_hook
class AdapterCheckpointHook(Hook):
    """Save, beside mmengine's full checkpoints, ``adapter_iter_N.pth`` /
    ``adapter_epoch_N.pth`` files holding only what training changed, and
    load such a file back over its base.

    Saved: every parameter that was trainable in some iteration of the run
    (the adapters; norms, neck and heads; the primary terms once stage 2 of
    :class:`QuadraticStageHook` trains them) and every buffer (BN statistics
    move without gradients). The rest comes from the base, recorded as
    ``meta['trained_only']['base']``: the ``init_cfg`` checkpoints of the
    model (``dict(module=..., checkpoint=..., prefix=...)``) and the run's
    ``load_from``, with a fingerprint of each tensor left out.

    Loading: with this hook in the config, ``load_from`` (``tools/test.py
    CONFIG adapter_iter_N.pth``, mmdet's tools too) first initialises the
    model from its base and then loads the file over it; a base that differs
    from the one trained over is an error naming the tensors. Without a
    runner, use :func:`quadra_mm.models.load_trained_checkpoint`.

    Args:
        interval (int, optional): save every ``interval`` iterations (or
            epochs); by default whenever a ``CheckpointHook`` saves.
        by_epoch (bool): count epochs instead of iterations (with
            ``interval``).
        save_last (bool): also save at the end of training (with
            ``interval``).
        out_dir (str, optional): where to write; the work dir by default.
    """

    priority = 'VERY_LOW'

    def __init__(
        self,
        interval: Optional[int] = None,
        by_epoch: bool = False,
        save_last: bool = True,
        out_dir: Optional[str] = None,
    ) -> None:
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_last = save_last
        self.out_dir = out_dir
        self._trained: Set[str] = set()

    def _record_trainable(self, runner) -> None:
        self._trained.update(
            name for name, p in _unwrap(runner.model).named_parameters() if p.requires_grad
        )

    def _base(self, runner) -> dict:
        init = [
            dict(module=name, checkpoint=cfg.get('checkpoint'), prefix=cfg.get('prefix'))
            for name, module in _unwrap(runner.model).named_modules()
            for cfg in [getattr(module, 'qnv2_pretrained', None)]
            if cfg
        ]
        load_from = None if runner._resume else runner._load_from
        return dict(init=init, load_from=load_from)

    def _save(self, runner, name: str) -> None:
        if not is_main_process():
            return
        checkpoint = trained_checkpoint(_unwrap(runner.model), self._trained, self._base(runner))
        checkpoint['meta'].update(epoch=runner.epoch, iter=runner.iter)
        dataset = getattr(runner.train_dataloader, 'dataset', None)
        if getattr(dataset, 'metainfo', None) is not None:
            checkpoint['meta']['dataset_meta'] = dataset.metainfo
        path = osp.join(self.out_dir or runner.work_dir, name)
        save_checkpoint(checkpoint, path)
        runner.logger.info(
            f'AdapterCheckpointHook: {len(checkpoint["state_dict"])} trained '
            f'tensors saved to {path}'
        )

    def _due(self, runner, by_epoch: bool) -> bool:
        if self.interval is None:
            return checkpoint_due(runner, by_epoch)
        if by_epoch != self.by_epoch:
            return False
        if by_epoch:
            return self.every_n_epochs(runner, self.interval) or (
                self.save_last and self.is_last_train_epoch(runner)
            )
        return self.every_n_train_iters(runner, self.interval) or (
            self.save_last and self.is_last_train_iter(runner)
        )

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._record_trainable(runner)
        if self._due(runner, by_epoch=False):
            self._save(runner, f'adapter_iter_{runner.iter + 1}.pth')

    def after_train_epoch(self, runner) -> None:
        if self._due(runner, by_epoch=True):
            self._save(runner, f'adapter_epoch_{runner.epoch + 1}.pth')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Called before mmengine loads checkpoint['state_dict'] into the
        # model: complete it with the base, so that the load is whole.
        if is_trained_checkpoint(checkpoint):
            model = _unwrap(runner.model)
            load_base(model, checkpoint)
            complete_trained_checkpoint(model, checkpoint, 'the loaded checkpoint')
