"""QNv2 models under the upstream tools' assumptions: frozen stages stay frozen
across a stage switch, mmcv's fuse_conv_bn, adapted classes of two ResNets in
one process, checkpoint file modes, the mm-free pure-torch packages."""

import copy
import os
import pickle
import subprocess
import sys
import textwrap

import torch
from mmcv.cnn import fuse_conv_bn
from mmdet.registry import MODELS as DET_MODELS
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from torch import nn

import quadra_mm  # noqa: F401
from quadra_mm.adapters import quadratic_layers
from quadra_mm.deploy import export_for_inference
from quadra_mm.models import QuadraNetV2

from helpers import ROOT, tiny_training


def _qnv2_resnet(scope='mmdet', stages=None, depth=18, **backbone):
    return DET_MODELS.build(
        dict(
            type='QuadraNetV2',
            backbone=dict(type=f'{scope}.ResNet', depth=depth, **backbone),
            targets='resnet',
            stages=stages,
            adapter=dict(rank=4),
        )
    )


def _perturb(model: nn.Module) -> None:
    """Non-zero adapters and non-trivial BN statistics, so that a wrong
    fusion or a lost adapter shows in the output."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, layer in quadratic_layers(model):
            layer.quad_u.weight.normal_(0, 0.2, generator=generator)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)


class _Snapshot(Hook):
    """The backbone's parameters when training starts (after init)."""

    def before_train(self, runner) -> None:
        self.params = {n: p.detach().clone() for n, p in runner.model.backbone.named_parameters()}
        self.trainable = {n for n, p in runner.model.backbone.named_parameters() if p.requires_grad}


class _Detector(BaseModel):
    """The QNv2-R50 backbone of configs/mask-rcnn_qnv2-r50_fpn_1x_coco.py
    (mmdet's `frozen_stages=1`, adapters on the stages that train) and a
    head."""

    def __init__(self):
        super().__init__()
        init_default_scope('mmdet')
        self.backbone = _qnv2_resnet(
            depth=50, stages=(1, 2, 3), frozen_stages=1, out_indices=(3,), norm_eval=True
        )
        self.head = nn.Linear(2048, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.head(self.backbone(inputs)[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=((out - targets) ** 2).mean())
        return out


def test_frozen_stages_stay_frozen_across_the_stage_switch(tmp_path):
    """R-50 QNv2 with frozen_stages=1 (stem and layer1 frozen by mmdet's
    ResNet): stage 1 is iteration 1, stage 2 iterations 2-3. The frozen
    weights are bit-identical after the stage-2 optimizer steps; the other
    primary weights did move. The checkpoints the run wrote have the mode of
    any file created in the same directory."""
    snapshot = _Snapshot()
    old_umask = os.umask(0o022)
    try:
        runner = Runner(
            model=_Detector(),
            work_dir=str(tmp_path),
            **tiny_training(6),
            train_cfg=dict(by_epoch=False, max_iters=3),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', interval=3, by_epoch=False, save_optimizer=False
                )
            ),
            custom_hooks=[dict(type='QuadraticStageHook', switch_iter=1), snapshot],
            default_scope='mmdet',
        )
        runner.train()
        reference = tmp_path / 'created_next_to_it'
        reference.write_bytes(b'')
    finally:
        os.umask(old_umask)

    hook = next(h for h in runner.hooks if type(h).__name__ == 'QuadraticStageHook')
    assert hook.phase == 2
    params = dict(runner.model.backbone.named_parameters())
    frozen = [n for n in params if n.startswith(('conv1.', 'bn1.', 'layer1.'))]
    assert frozen and not snapshot.trainable & set(frozen)
    for name in frozen:
        assert torch.equal(params[name], snapshot.params[name]), name
    # stage 2 did step the primary terms that were not frozen
    for name in ('layer2.0.conv1.weight', 'layer4.1.conv2.weight'):
        assert not torch.equal(params[name], snapshot.params[name]), name

    checkpoint = tmp_path / 'iter_3.pth'
    assert checkpoint.stat().st_mode == reference.stat().st_mode
    assert oct(checkpoint.stat().st_mode & 0o777) == '0o644'


def test_fuse_conv_bn_applies_the_norm_to_the_quadratic_term():
    """mmcv's fuse_conv_bn (mmdet benchmark.py --fuse-conv-bn) on an adapted
    ResNet with non-zero U, in its training form and exported: the outputs
    of the unfused model (1e-5). The branch is normalised when the pair is
    fused; a forward changes no tensor of the fused model."""
    init_default_scope('mmdet')
    model = _qnv2_resnet(out_indices=(0, 1, 2, 3))
    model.eval()  # mm ResNets' train() returns None: no chaining
    _perturb(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        for form in (copy.deepcopy(model), export_for_inference(model)):
            fused = fuse_conv_bn(form)
            assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
            before = {k: v.clone() for k, v in fused.state_dict().items()}
            outputs = fused(x)
            for key, value in fused.state_dict().items():
                assert torch.equal(value, before[key]), key
            for out, ref in zip(outputs, expected):
                torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


_UNPICKLE = textwrap.dedent("""
    import pickle, sys, torch
    with open(sys.argv[1], 'rb') as f:
        models, x, expected = pickle.load(f)
    for model, ref in zip(models, expected):
        with torch.no_grad():
            out = model(x)
        assert torch.equal(out[-1], ref[-1]), type(model).__qualname__
        print(type(model).__qualname__)
""")


def test_mmdet_and_mmpretrain_resnets_adapted_in_one_process(tmp_path):
    """Two bases of the same name get two adapted classes; both deep-copy
    and pickle, and unpickle in a fresh process that built neither."""
    det, cls = _qnv2_resnet('mmdet'), _qnv2_resnet('mmpretrain')
    det.eval()
    cls.eval()
    assert type(det) is not type(cls)
    assert type(det).__qualname__ != type(cls).__qualname__
    x = torch.randn(1, 3, 32, 32)
    models = []
    for model in (det, cls):
        _perturb(model)
        clone = copy.deepcopy(model)
        restored = pickle.loads(pickle.dumps(model))
        assert type(clone) is type(model) is type(restored)
        assert isinstance(restored, QuadraNetV2)
        with torch.no_grad():
            for other in (clone, restored):
                assert torch.equal(other(x)[-1], model(x)[-1])
        models.append(model)
    with torch.no_grad():
        expected = [model(x) for model in models]
    path = tmp_path / 'models.pkl'
    path.write_bytes(pickle.dumps((models, x, expected)))
    result = subprocess.run(
        [sys.executable, '-c', _UNPICKLE, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = result.stdout.split()
    assert names == [type(det).__qualname__, type(cls).__qualname__]
    assert 'mmdet.models' in names[0] and 'mmpretrain.models' in names[1]


_WITHOUT_OPENMMLAB = textwrap.dedent("""
    import importlib.abc, sys

    HIDDEN = ('mmengine', 'mmcv', 'mmdet', 'mmpretrain')

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in HIDDEN:
                raise ModuleNotFoundError(f'No module named {name!r}',
                                          name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    import torch
    import quadra_mm.ops, quadra_mm.adapters, quadra_mm.deploy
    from quadra_mm.adapters import inject_quadratic_adapters
    from quadra_mm.deploy import export_for_inference

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    inject_quadratic_adapters(model, [dict(type='0', rank=2)])
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert export_for_inference(model)(x).shape == model(x).shape
    leaked = sorted(m for m in sys.modules if m.split('.')[0] in HIDDEN)
    assert not leaked, leaked
    sys.argv = ['benchmark_adapters.py', '--help']
    import runpy
    try:
        runpy.run_path('tools/benchmark_adapters.py', run_name='__main__')
    except SystemExit as stop:
        assert stop.code == 0, stop.code
    print('pure torch ok')
""")


def test_pure_torch_packages_import_without_openmmlab():
    """`import quadra_mm.ops, quadra_mm.adapters, quadra_mm.deploy` and the
    adapter benchmark tool with mmengine, mmcv, mmdet and mmpretrain
    hidden, as on a machine without OpenMMLab."""
    result = subprocess.run(
        [sys.executable, '-c', _WITHOUT_OPENMMLAB],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'pure torch ok' in result.stdout
