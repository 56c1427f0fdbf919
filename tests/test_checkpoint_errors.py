"""A checkpoint that cannot be read is one error naming the file and the
likely cause, on every load path the project touches; a hostile pickle stays
refused and its code never runs."""

import os
import pickle

import pytest
import torch
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import load_checkpoint

import quadra_mm  # noqa: F401
from quadra_mm.checkpoint_errors import CheckpointReadError
from quadra_mm.models import load_trained_checkpoint

from helpers import convnext_cfg, qnv2_cfg, save_zoo_checkpoint


class _MakesADirectory:
    """Unpickling it would call os.mkdir(marker)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _backbone(init_cfg=None):
    init_default_scope('mmdet')
    return MODELS.build(qnv2_cfg(convnext_cfg(), init_cfg=init_cfg))


@pytest.fixture
def bad_files(tmp_path):
    good = save_zoo_checkpoint(_backbone(), str(tmp_path / 'good.pth'))
    data = open(good, 'rb').read()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / 'notes.pth'
    text.write_text('epoch 12: loss 0.31, mAP 0.42\n')
    marker = tmp_path / 'pwned'
    hostile = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {}, 'meta': _MakesADirectory(str(marker))}, hostile)
    hostile_legacy = tmp_path / 'hostile_legacy.pth'
    with open(hostile_legacy, 'wb') as f:
        # Protocol 2, as torch's legacy format: torch reads it as one.
        pickle.dump({'state_dict': _MakesADirectory(str(marker))}, f, protocol=2)
    return dict(
        truncated=(truncated, 'truncated'),
        text=(text, 'not a torch checkpoint'),
        hostile=(hostile, 'mkdir'),
        hostile_legacy=(hostile_legacy, 'mkdir'),
    ), marker


def _load_as_init_cfg(path):
    _backbone(dict(type='Pretrained', checkpoint=str(path))).init_weights()


def _load_as_load_from(path):
    # Runner.load_checkpoint (load_from) and Runner.resume (--resume) read
    # the file through this same mmengine loader.
    load_checkpoint(_backbone(), str(path), map_location='cpu')


def _load_as_trained_checkpoint(path):
    load_trained_checkpoint(_backbone(), str(path))


@pytest.mark.parametrize('kind', ['truncated', 'text', 'hostile', 'hostile_legacy'])
@pytest.mark.parametrize(
    'load', [_load_as_init_cfg, _load_as_load_from, _load_as_trained_checkpoint]
)
def test_unreadable_checkpoint_is_named(bad_files, kind, load):
    files, marker = bad_files
    path, cause = files[kind]
    with pytest.raises(CheckpointReadError) as error:
        load(path)
    message = str(error.value)
    assert str(path) in message
    assert cause in message, message
    assert error.value.path == str(path)
    assert not marker.exists()  # the pickle's code never ran


def test_refusal_names_the_refused_type(bad_files):
    files, _ = bad_files
    with pytest.raises(
        CheckpointReadError,
        match=r'refused by the weights_only allow-list: it '
        r'pickles (posix|os)\.mkdir',
    ):
        _load_as_load_from(files['hostile'][0])
