"""Exact resume: the random generators and the data-stream position travel
inside the checkpoint, so ``--resume`` continues an interrupted run exactly."""

import random
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook

from quadra_mm.registry import register_hook

__all__ = ['ExactResumeHook', 'capture_rng_state', 'checkpoint_due', 'restore_rng_state']

STATE_KEY = 'exact_resume'


def capture_rng_state() -> Dict[str, Any]:
    """This process's generators (python ``random``, numpy's global one,
    torch CPU and every CUDA device), as values ``torch.load(...,
    weights_only=True)`` reads: tensors, ints, floats, strings, lists."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return dict(
        python=dict(
            version=py_version, state=torch.tensor(py_state, dtype=torch.int64), gauss=py_gauss
        ),
        numpy=dict(
            kind=str(np_kind),
            keys=torch.from_numpy(np_keys.astype(np.int64)),
            pos=int(np_pos),
            has_gauss=int(np_has_gauss),
            gauss=float(np_gauss),
        ),
        torch=torch.get_rng_state(),
        cuda=(torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []),
    )


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Set this process's generators to ``state`` (:func:`capture_rng_state`).

    Raises:
        ValueError: the state holds a different number of CUDA devices than
            this process sees.
    """
    py, npy = state['python'], state['numpy']
    cuda = state['cuda']
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda and len(cuda) != visible:
        raise ValueError(
            f'ExactResumeHook: the checkpoint holds the RNG '
            f'state of {len(cuda)} CUDA devices, this process '
            f'sees {visible}'
        )
    random.setstate((py['version'], tuple(py['state'].tolist()), py['gauss']))
    np.random.set_state(
        (
            npy['kind'],
            npy['keys'].numpy().astype(np.uint32),
            npy['pos'],
            npy['has_gauss'],
            npy['gauss'],
        )
    )
    torch.set_rng_state(state['torch'])
    if cuda:
        torch.cuda.set_rng_state_all(cuda)


def _index_sampler(dataloader) -> Any:
    """The sampler that orders the data (a batch sampler's inner one)."""
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    return getattr(batch_sampler, 'sampler', None) or getattr(dataloader, 'sampler', None)


class _ResumedIterator:
    """Stands in for ``IterBasedTrainLoop.dataloader_iterator`` while the loop
    replays the batches the checkpointed run consumed; right before the first
    new batch it restores the generators and puts the real iterator back."""

    def __init__(self, loop, skip: int, on_resume) -> None:
        self._loop, self._skip, self._on_resume = loop, skip, on_resume
        self._iterator = loop.dataloader_iterator

    def __iter__(self) -> '_ResumedIterator':
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
            return next(self._iterator)
        self._loop.dataloader_iterator = self._iterator
        self._on_resume()
        return next(self._iterator)


class _ResumedEpoch:
    """Stands in for ``EpochBasedTrainLoop.dataloader`` for the resumed epoch:
    skips the batches of it the checkpointed run consumed (mmengine restarts
    the epoch from its first batch), restores the generators before the next
    one and puts the real dataloader back."""

    def __init__(self, loop, skip: int, on_resume) -> None:
        self._loop, self._skip, self._on_resume = loop, skip, on_resume
        self._dataloader = loop.dataloader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataloader, name)

    def __len__(self) -> int:
        return len(self._dataloader)

    def __iter__(self) -> Iterator:
        self._loop.dataloader = self._dataloader
        iterator = iter(self._dataloader)
        for _ in range(self._skip):
            next(iterator)
        self._on_resume()
        return iterator


@register_hook
class ExactResumeHook(Hook):
    """Make ``resume`` continue a run exactly where its checkpoint left it.

    mmengine 0.10.7 checkpoints hold the model, optimizer, schedulers and the
    iteration, but no random state: after ``--resume`` the python, numpy and
    torch generators are re-seeded, so the data pipeline's random flips, the
    RPN/RoI samplers and drop-path draw differently from the uninterrupted
    run. This hook stores, under ``checkpoint['exact_resume']``:

    * ``rng``: the generator state of every rank (python ``random``, numpy,
      torch CPU, each CUDA device; :func:`capture_rng_state`), gathered from
      all ranks when a :class:`~mmengine.hooks.CheckpointHook` is about to
      save, rank ``i`` at index ``i``;
    * ``iter``, ``epoch``: the position of the data stream (batches consumed,
      as the checkpoint's ``meta``), ``sampler_seed``, ``sampler_epoch``.

    On resume, the sampler gets its seed back (mmengine draws a new one when
    the config sets no ``randomness.seed``); the consumed batches are skipped
    by the loop (``IterBasedTrainLoop``) or by this hook (an
    ``EpochBasedTrainLoop`` checkpoint taken mid-epoch, which mmengine would
    replay from the epoch's first batch); then, right before the first new
    batch is drawn, every generator is set to its checkpointed state.
    Validation runs between ``before_val`` and ``after_val`` with the
    generators saved and restored, so a validation that follows a checkpoint
    does not shift the training stream.

    A checkpoint without this state, or written by a different number of
    ranks, resumes as mmengine does, with a warning.
    """

    priority = 'LOW'  # after the other hooks, before CheckpointHook

    def __init__(self) -> None:
        self._captured: Optional[Dict[str, Any]] = None
        self._loaded: Optional[Dict[str, Any]] = None
        self._val_rng: Optional[Dict[str, Any]] = None

    # -- saving ---------------------------------------------------------

    def _capture(self, runner, consumed: int, by_epoch: bool) -> None:
        rng = capture_rng_state()
        if get_world_size() > 1 and checkpoint_due(runner, by_epoch):
            ranks: List[Dict[str, Any]] = all_gather_object(rng)
        else:
            ranks = [rng]
        sampler = _index_sampler(runner.train_loop.dataloader)
        self._captured = dict(
            iter=consumed,
            epoch=runner.epoch,
            rng=ranks,
            sampler_seed=getattr(sampler, 'seed', None),
            sampler_epoch=getattr(sampler, 'epoch', None),
        )

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._capture(runner, runner.iter + 1, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._capture(runner, runner.iter, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._captured is not None:
            checkpoint[STATE_KEY] = self._captured

    def before_val(self, runner) -> None:
        self._val_rng = capture_rng_state()

    def after_val(self, runner) -> None:
        if self._val_rng is not None:
            restore_rng_state(self._val_rng)
            self._val_rng = None

    # -- resuming -------------------------------------------------------

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(STATE_KEY)

    def before_train(self, runner) -> None:
        state, self._loaded = self._loaded, None
        if runner.iter == 0:
            return  # a fresh run (or load_from): nothing to continue
        if state is None or state['iter'] != runner.iter:
            runner.logger.warning(
                'ExactResumeHook: the resumed checkpoint holds no generator '
                'state for iteration {}; the run continues with re-seeded '
                'generators and will differ from an uninterrupted one'.format(runner.iter)
            )
            return
        loop = runner.train_loop
        sampler = _index_sampler(loop.dataloader)
        seed_changed = getattr(sampler, 'seed', None) != state['sampler_seed']
        if seed_changed:
            sampler.seed = state['sampler_seed']

        rank, world = get_rank(), get_world_size()
        rng = state['rng'][rank] if len(state['rng']) == world else None
        if rng is None:
            runner.logger.warning(
                f'ExactResumeHook: the checkpoint holds the generator state '
                f'of {len(state["rng"])} ranks, this run has {world}: the '
                'data order is restored, the random draws are not'
            )

        def on_resume() -> None:
            if rng is not None:
                restore_rng_state(rng)

        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop
            if seed_changed:  # worker prefetch may have drawn with the old seed
                loop.dataloader_iterator = type(loop.dataloader_iterator)(loop.dataloader)
            # The loop itself replays the `runner.iter` consumed batches.
            loop.dataloader_iterator = _ResumedIterator(loop, runner.iter, on_resume)
        else:
            skip = runner.iter - runner.epoch * len(loop.dataloader)
            loop.dataloader = _ResumedEpoch(loop, skip, on_resume)
        runner.logger.info(
            f'ExactResumeHook: continuing the data stream after '
            f'{runner.iter} batches (sampler seed {state["sampler_seed"]}) '
            'with the checkpointed generator state'
            + ('' if rng is not None else ' (generators not restored)')
        )


def checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` saves at the end of this iteration
    (``by_epoch=False``) or epoch: only then are the ranks' states gathered."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner)
            )
        else:
            due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner)
            )
        if due:
            return True
    return False
