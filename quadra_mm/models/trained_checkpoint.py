"""Checkpoints of only what training changed (written by
:class:`~quadra_mm.hooks.AdapterCheckpointHook`), and loading them back over
the base they were trained on."""

from typing import Iterable

import torch
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from .state_dict_keys import extract_state_dict, key_problems

TRAINED_KEY = 'trained_only'


def _fingerprint(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().sum())


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def trained_checkpoint(model: nn.Module, trained: Iterable[str], base: dict) -> dict:
    """A checkpoint holding only what training changed.

    Args:
        model: the trained model (unwrapped).
        trained: names of the parameters that trained at some point.
        base: where the rest comes from, ``dict(load_from=..., init=[...])``
            (see :class:`~quadra_mm.hooks.AdapterCheckpointHook`).

    Returns:
        ``{'meta': {'trained_only': {...}}, 'state_dict': ...}``: the trained
        parameters and every buffer (BN statistics move without gradients),
        plus a fingerprint (float64 sum) of each tensor left out, so that a
        load over a different base is caught.
    """
    trained = set(trained)
    params = dict(model.named_parameters())
    state_dict = model.state_dict()
    kept = {k: v for k, v in state_dict.items() if k in trained or k not in params}
    left_out = {k: _fingerprint(v) for k, v in state_dict.items() if k not in kept}
    return dict(meta={TRAINED_KEY: dict(base=base, base_fingerprint=left_out)}, state_dict=kept)


def is_trained_checkpoint(checkpoint: dict) -> bool:
    """Whether ``checkpoint`` (a loaded object) is a trained-only one."""
    return TRAINED_KEY in (checkpoint.get('meta') or {})


def complete_trained_checkpoint(model: nn.Module, checkpoint: dict, source: str) -> dict:
    """Fill ``checkpoint['state_dict']`` of a trained-only checkpoint with
    the base: ``model`` must hold the base already (built from the training
    config and initialised: ``init_cfg`` checkpoints, then ``load_from``).

    Raises:
        ValueError: a tensor left out of the checkpoint differs from the
            base it was trained on (named), or a key does not fit ``model``.
    """
    info = checkpoint['meta'][TRAINED_KEY]
    own = model.state_dict()
    trained = extract_state_dict(checkpoint, source, None)
    unexpected = [k for k in trained if k not in own]
    absent = [k for k in own if k not in trained and k not in info['base_fingerprint']]
    changed = [
        k
        for k, value in info['base_fingerprint'].items()
        if k in own and not _close(_fingerprint(own[k]), value)
    ]
    problems = key_problems(
        ('keys not in the model', unexpected),
        ('model keys it knows nothing of', absent),
        ('tensors that differ from the base it was trained over', changed),
    )
    if problems:
        raise ValueError(
            f'trained-only checkpoint {source} (base {info["base"]}) does not '
            f'fit this model: {problems}'
        )
    checkpoint['state_dict'] = {**own, **trained}
    return checkpoint


def load_base(model: nn.Module, checkpoint: dict, map_location: str = 'cpu') -> None:
    """Put the base of a trained-only checkpoint into ``model``: its own
    initialisation (``init_cfg`` checkpoints) and the run's ``load_from``."""
    base = checkpoint['meta'][TRAINED_KEY]['base']
    if not getattr(model, '_is_init', False) and hasattr(model, 'init_weights'):
        model.init_weights()
    if base.get('load_from'):
        source = base['load_from']
        state_dict = extract_state_dict(
            _load_checkpoint(source, map_location=map_location), source, None
        )
        model.load_state_dict(state_dict, strict=False)


def load_trained_checkpoint(model: nn.Module, filename: str, map_location: str = 'cpu') -> dict:
    """Load a full checkpoint or a trained-only one (over the base, which
    is loaded here first: ``model.init_weights()`` unless done, then the
    base's ``load_from``) into ``model``, strictly. Returns the checkpoint."""
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    if is_trained_checkpoint(checkpoint):
        load_base(model, checkpoint, map_location)
        complete_trained_checkpoint(model, checkpoint, filename)
    state_dict = extract_state_dict(checkpoint, filename, None)
    model.load_state_dict(state_dict, strict=True)
    return checkpoint
