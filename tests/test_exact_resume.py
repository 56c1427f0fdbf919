"""ExactResumeHook: generator state and data position inside the checkpoint,
weights_only-safe; a resumed mmengine run repeats the uninterrupted one
exactly (in process; the SIGKILL test with the mm tools is in
test_trustworthy_runs.py)."""

import random

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import quadra_mm  # noqa: F401
from quadra_mm.hooks import ExactResumeHook
from quadra_mm.hooks.exact_resume_hook import capture_rng_state, restore_rng_state


def _draws():
    return (random.random(), float(np.random.rand()), np.random.randn(), float(torch.rand(1)))


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    random.gauss(0, 1)  # a cached gaussian is part of python's state
    np.random.randn()
    state = capture_rng_state()
    expected = _draws()
    _draws()
    torch.save({'exact_resume': {'rng': [state]}}, tmp_path / 'state.pth')
    loaded = torch.load(tmp_path / 'state.pth', weights_only=True)
    restore_rng_state(loaded['exact_resume']['rng'][0])
    assert _draws() == expected


class _NoisyData(Dataset):
    """Augmentation drawing from numpy and python ``random``."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        flip = -1.0 if random.random() < 0.5 else 1.0
        noise = np.random.randn(2).astype(np.float32)
        return dict(inputs=torch.tensor(noise) * flip + index, labels=torch.tensor([float(index)]))


class _DropoutModel(BaseModel):
    """Draws from torch's generator in every training step."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(self.dropout(inputs))
        if mode == 'loss':
            return dict(loss=((out - labels) ** 2).mean())
        return out


def _runner(work_dir, hooks, loop, resume_from=None):
    # 8 samples in batches of 2: an epoch is 4 iterations; checkpoints at
    # iterations 2, 4, 6 (iteration 2 is mid-epoch).
    train_cfg = (
        dict(by_epoch=False, max_iters=6) if loop == 'iter' else dict(by_epoch=True, max_epochs=2)
    )
    return Runner(
        model=_DropoutModel(),
        work_dir=str(work_dir),
        # No seed in the config: mmengine draws the sampler's seed anew in
        # every run, the resumed one included.
        train_dataloader=dict(
            dataset=_NoisyData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            collate_fn=dict(type='default_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=train_cfg,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        custom_hooks=hooks,
        load_from=resume_from,
        resume=resume_from is not None,
        default_scope='mmengine',
        experiment_name=f'exact_resume_{loop}_{work_dir.name}',
    )


def _final_weight(work_dir, loop):
    last = 'iter_6.pth' if loop == 'iter' else 'iter_8.pth'
    return torch.load(work_dir / last, weights_only=False)['state_dict']['linear.weight']


@pytest.mark.parametrize('loop', ['iter', 'epoch'])
@pytest.mark.parametrize('with_hook', [True, False])
def test_resumed_run_repeats_the_uninterrupted_one(tmp_path, with_hook, loop):
    """Resumed from the mid-epoch checkpoint of iteration 2: mmengine's
    IterBasedTrainLoop replays the consumed batches, its EpochBasedTrainLoop
    restarts the epoch (the hook skips them)."""
    hooks = [ExactResumeHook()] if with_hook else []
    _runner(tmp_path / 'whole', hooks, loop).train()
    # Another run's draws between the two: the resumed run must not depend
    # on the state the process happens to be in.
    _draws()
    hooks = [ExactResumeHook()] if with_hook else []
    _runner(tmp_path / 'resumed', hooks, loop, str(tmp_path / 'whole' / 'iter_2.pth')).train()
    same = torch.equal(
        _final_weight(tmp_path / 'whole', loop), _final_weight(tmp_path / 'resumed', loop)
    )
    # Without the hook the resumed run draws differently (the control).
    assert same == with_hook
    if with_hook:
        saved = torch.load(tmp_path / 'whole' / 'iter_2.pth', weights_only=False)['exact_resume']
        assert saved['iter'] == 2 and len(saved['rng']) == 1
        assert isinstance(saved['sampler_seed'], int)
