"""quadra_mm where users already work: beside `transformers`, with which
mmpretrain 1.2.0 fails at import. The pure-torch packages import, and
`import quadra_mm` registers into mmdet with one warning naming the cause and
the fix. transformers lives in a `pip install --target` directory outside the
venv (tools/transformers_target.sh, installed by tools/bootstrap.sh) that each
test puts on PYTHONPATH in a subprocess."""

import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def transformers_env() -> dict:
    target = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'transformers_target.sh')],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not osp.isfile(osp.join(target, '.complete')):
        pytest.skip(
            f'no transformers in {target}: tools/bootstrap.sh installs it '
            '(`make setup`); it could not when this was skipped'
        )
    return dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, target]))


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_mmpretrain_breaks_beside_transformers(transformers_env):
    """The environment reproduces the users' failure (else the tests below
    would prove nothing)."""
    result = _run('import transformers\nimport mmpretrain.models', transformers_env)
    assert result.returncode != 0
    assert 'TypeError: NoneType takes no arguments' in result.stderr, result.stderr[-2000:]


def test_pure_torch_packages_import_and_work(transformers_env):
    result = _run(
        """
import torch
from quadra_mm.adapters import inject_quadratic_adapters, mark_trainable
from quadra_mm.deploy import export_for_inference
from quadra_mm.ops import QuadraticConv2d

model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
inject_quadratic_adapters(model, [dict(type='0', rank=2)])
assert isinstance(model[0], QuadraticConv2d)
mark_trainable(model)
x = torch.randn(1, 3, 8, 8)
with torch.no_grad():
    assert torch.equal(export_for_inference(model)(x), model(x))
print('adapters ok')
""",
        transformers_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'adapters ok' in result.stdout


def test_import_registers_in_mmdet_with_one_warning(transformers_env):
    result = _run(
        """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import quadra_mm
mine = [str(w.message) for w in caught if 'quadra_mm' in str(w.message)]
assert len(mine) == 1, mine
print(mine[0])

from mmdet.registry import HOOKS, MODELS
from mmengine.registry import init_default_scope
init_default_scope('mmdet')
for hook in ('QuadraticStageHook', 'ExactResumeHook', 'AdapterCheckpointHook'):
    assert HOOKS.get(hook) is not None, hook
backbone = MODELS.build(dict(type='QuadraNetV2', backbone=dict(type='ResNet', depth=18),
                             targets='resnet', adapter=dict(rank=2)))
assert type(backbone).__name__ == 'QuadraNetV2<mmdet.models.backbones.resnet.ResNet>'
print('registered in mmdet')
""",
        transformers_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'registered in mmdet' in result.stdout
    warning = result.stdout.splitlines()[0]
    assert 'mmpretrain cannot be imported' in warning
    assert 'TypeError: NoneType takes no arguments' in warning  # the cause
    assert 'pip uninstall transformers' in warning  # the fix
