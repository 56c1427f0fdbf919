"""WeightsOnlyCheckpointHook: checkpoints of a real run load with plain
``torch.load`` (weights_only, no mmengine allow-list), and a run resumed from
one continues its message hub as before."""

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from test_hooks import TinyDetector

import quadra_mm  # noqa: F401
from quadra_mm.hooks.weights_only_checkpoint_hook import restore_history_buffers, to_weights_only

from helpers import tiny_training


def _runner(work_dir, max_iters, resume=False):
    return Runner(
        model=TinyDetector(),
        work_dir=str(work_dir),
        **tiny_training(8),
        param_scheduler=dict(type='CosineAnnealingLR', T_max=4, by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1),
        ),
        custom_hooks=[
            dict(type='QuadraticStageHook', switch_iter=1),
            dict(type='QuadraticStatsHook', interval=1),
            dict(type='WeightsOnlyCheckpointHook'),
        ],
        resume=resume,
        default_scope='mmdet',
        experiment_name=f'weights_only_{max_iters}_{resume}',
    )


def test_history_buffers_round_trip_bit_for_bit():
    buffer = HistoryBuffer([0.5, 1.25, 3.0], [1, 2, 4], max_length=7)
    plain = to_weights_only(
        dict(hub=dict(log_scalars={'train/loss': buffer}), seed=np.int64(3), mean=np.float32(0.5))
    )
    assert plain['seed'] == 3 and type(plain['seed']) is int
    assert type(plain['mean']) is float
    restored = restore_history_buffers(plain['hub'])['log_scalars']
    restored = restored['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.max_length == 7
    for ours, theirs in zip(restored.data, buffer.data):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)


def test_checkpoints_load_with_plain_torch_load_and_resume(tmp_path):
    first = _runner(tmp_path, 2)
    first.train()
    # torch's default weights_only=True, outside mmengine's CheckpointLoader.
    checkpoint = torch.load(tmp_path / 'iter_2.pth')
    assert checkpoint['meta']['iter'] == 2
    assert checkpoint['optimizer']['state']
    # module versions, which load_state_dict reads, are kept
    assert (
        checkpoint['state_dict']._metadata['backbone.stages.0.0.norm']
        == first.model.state_dict()._metadata['backbone.stages.0.0.norm']
    )
    losses = first.message_hub.get_scalar('train/loss').data[0]

    second = _runner(tmp_path, 3, resume=True)
    second.train()
    resumed = second.message_hub.get_scalar('train/loss').data[0]
    assert len(resumed) == 3
    np.testing.assert_array_equal(resumed[:2], losses)
    ratio = second.message_hub.get_scalar('train/qnv2_stage1_ratio')
    assert len(ratio.data[0]) == 3
