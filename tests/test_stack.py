"""The installed OpenMMLab stack on torch 2.14 works, with quadra_mm's
compat layer, and quadra_mm registers into both mm scopes."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import Runner

import quadra_mm
from quadra_mm.atomic_local_backend import AtomicLocalBackend

CONFIG_DIR = os.path.join(os.path.dirname(__file__), '..', 'configs')


def test_mmcv_ops_nms_and_roi_align_on_cpu():
    import mmcv
    from mmcv.ops import RoIAlign, nms

    assert mmcv.__version__ == '2.1.0'
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # IoU(box0, box1) = 81 / 119 = 0.68 > 0.5: box1 is suppressed.
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))

    # A linear ramp feature f(x, y) = x: bilinear RoIAlign of a box returns
    # the x coordinate of each bin centre exactly.
    feat = torch.arange(8.0).repeat(8, 1)[None, None]  # 1x1x8x8, f = x
    rois = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]])
    align = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    out = align(feat, rois)
    # aligned=True shifts by -0.5 px: bins over x in [0.5, 2.5], [2.5, 4.5].
    expected = torch.tensor([[1.5, 3.5], [1.5, 3.5]])
    assert torch.allclose(out[0, 0], expected, atol=1e-5)


def test_mmdet_zoo_config_resolves_builds_and_runs(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs

    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(
        "_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']\n"
        'model = dict(backbone=dict(depth=18, init_cfg=None),\n'
        '             neck=dict(in_channels=[64, 128, 256, 512]))\n'
    )
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'MaskRCNN'
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 96, 128]], num_items=[2, 1], with_mask=True)
    data = model.data_preprocessor(packed, True)
    model.train()
    losses = model(**data, mode='loss')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for v in losses.values())
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2
    assert hasattr(results[0].pred_instances, 'masks')


class _ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out - labels) ** 2).mean())
        return out


class _NotAWeight:
    """Stands for any pickled object a checkpoint must not smuggle in."""


class _ReachesIntoArray:
    """Unpickles as ``getattr(array, 'tofile')``: a file-writing callable."""

    def __reduce__(self):
        return getattr, (np.zeros(1), 'tofile')


def _runner(work_dir, max_iters, resume, seen):
    from mmengine.hooks import Hook

    class RecordIter(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen.append(runner.iter + 1)  # 1-based iteration number

    data = [dict(inputs=torch.randn(2), labels=torch.randn(1)) for _ in range(8)]
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False)),
        custom_hooks=[RecordIter()],
        resume=resume,
        default_scope='mmengine',
        experiment_name=f'resume_{max_iters}_{resume}',
    )


def test_runner_checkpoint_resumes_under_weights_only_default(tmp_path):
    first_seen, second_seen = [], []
    _runner(tmp_path, 2, False, first_seen).train()
    ckpt = tmp_path / 'iter_2.pth'
    assert first_seen == [1, 2] and ckpt.is_file()
    # The stack quirk quadra_mm works around: the plain torch 2.14 default
    # refuses mmengine's own checkpoints.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt)

    runner = _runner(tmp_path, 4, True, second_seen)
    runner.train()
    assert second_seen == [3, 4]
    assert runner.iter == 4
    resumed = torch.load(tmp_path / 'iter_2.pth', weights_only=False)
    assert resumed['meta']['iter'] == 2
    # A fresh process (no HistoryBuffer created yet) loads it too.
    code = (
        'import quadra_mm; from mmengine.runner.checkpoint import '
        f'CheckpointLoader; c = CheckpointLoader.load_checkpoint({str(ckpt)!r}); '
        "print(c['meta']['iter'])"
    )
    out = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith('2')
    # An arbitrary pickled object is still refused through mmengine.
    from mmengine.runner.checkpoint import CheckpointLoader

    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'obj': _NotAWeight()}, evil)
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(str(evil), map_location='cpu')
    torch.save({'meta': _ReachesIntoArray()}, evil)
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        CheckpointLoader.load_checkpoint(str(evil), map_location='cpu')


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    backend = get_file_backend(str(target))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'complete checkpoint', str(target))

    def crash(fd):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'fsync', crash)
    with pytest.raises(OSError, match='disk full'):
        backend.put(b'half', str(target))
    assert target.read_bytes() == b'complete checkpoint'
    assert os.listdir(tmp_path) == ['epoch_1.pth']


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_custom_imports_register_in_both_scopes(tmp_path, scope):
    cfg_file = tmp_path / f'{scope}.py'
    cfg_file.write_text(
        f"default_scope = '{scope}'\n"
        "custom_imports = dict(imports=['quadra_mm'],"
        ' allow_failed_imports=False)\n'
        "backbone = dict(type='QuadraNetV2',\n"
        "    backbone=dict(type='ResNet', depth=18),\n"
        "    targets='resnet', adapter=dict(rank=4))\n"
        "hook = dict(type='QuadraticStatsHook', interval=5)\n"
    )
    cfg = Config.fromfile(str(cfg_file))
    registry_module = __import__(f'{scope}.registry', fromlist=['MODELS'])
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        backbone = registry_module.MODELS.build(cfg.backbone)
        hook = registry_module.HOOKS.build(cfg.hook)
    assert isinstance(backbone, quadra_mm.models.QuadraNetV2)
    assert type(backbone).__mro__[2].__module__.startswith(scope)
    assert hook.interval == 5
    for registry in (registry_module.MODELS, registry_module.HOOKS):
        assert registry.scope == scope
    assert any(n.endswith('.quad_u.weight') for n, _ in backbone.named_parameters())
