"""Strict loading of first-order (or QNv2) checkpoints into an adapted
model, and checkpoints of only what training changed.

mmengine's ``PretrainedInit`` loads with ``strict=False`` and only logs what
did not match; pointing a QNv2 backbone at the wrong checkpoint would then
silently leave it randomly initialised. Here the only keys that may be missing
are the quadratic adapters (left at their zero-output initialisation) and
keys the config explicitly allows; anything else is an error that names them.
"""
import os.path as osp
import re
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from quadra_mm.ops import is_adapter_param_name

# torchvision/timm-era checkpoints predate BatchNorm's counter buffer.
_ALWAYS_OPTIONAL = (r'(.*\.)?num_batches_tracked$', )


def _summarise(keys: Sequence[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')


def extract_state_dict(checkpoint: dict, source: str,
                       prefix: Optional[str]) -> Dict[str, torch.Tensor]:
    """The (prefix-stripped) state dict held by a loaded checkpoint object."""
    state_dict = checkpoint
    for container in ('state_dict', 'model'):
        if isinstance(state_dict, dict) and container in state_dict and \
                isinstance(state_dict[container], dict):
            state_dict = state_dict[container]
            break
    if not isinstance(state_dict, dict):
        raise ValueError(f'checkpoint {source} holds a {type(state_dict)}, '
                         'not a state dict')
    state_dict = {re.sub(r'^module\.', '', k): v
                  for k, v in state_dict.items()}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = {k[len(prefix):]: v for k, v in state_dict.items()
                    if k.startswith(prefix)}
        if not selected:
            groups = sorted({k.split('.')[0] + '.' for k in state_dict})
            raise ValueError(
                f"checkpoint {source} has no keys under prefix '{prefix}' "
                f'(its top-level groups: {_summarise(groups)})')
        state_dict = selected
    return state_dict


def load_adapted_checkpoint(module: nn.Module,
                            checkpoint: str,
                            prefix: Optional[str] = None,
                            map_location: str = 'cpu',
                            allow_missing: Iterable[str] = (),
                            allow_unexpected: Iterable[str] = (),
                            owner: str = 'QuadraNetV2') -> List[str]:
    """Load ``checkpoint`` into ``module``; return the adapter keys left
    at their initialisation.

    Args:
        module: the adapted model (or backbone).
        checkpoint: a path or URL, anything mmengine's ``CheckpointLoader``
            reads; a ``{'state_dict': ...}`` / ``{'model': ...}`` dict or a
            bare state dict.
        prefix: keep only keys under this prefix and strip it, e.g.
            ``'backbone.'`` for an mmpretrain classifier or mmdet detector.
        allow_missing: regexes of non-adapter keys that may be missing (e.g.
            the output norms ``norm0``-``norm2`` a detection ConvNeXt adds to
            an ImageNet classifier's backbone).
        allow_unexpected: regexes of checkpoint keys to ignore (e.g. the
            ``fc`` classifier of a torchvision ResNet).
        owner: name used in messages.

    Raises:
        FileNotFoundError: ``checkpoint`` is a local path that does not
            exist.
        ValueError: a missing non-adapter key not allowed by
            ``allow_missing``, an unexpected key, or a shape mismatch.
    """
    if isinstance(checkpoint, str) and '://' not in checkpoint and \
            not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'{owner}: init_cfg.checkpoint {checkpoint!r} is not a file')
    loaded = _load_checkpoint(checkpoint, map_location=map_location)
    state_dict = extract_state_dict(loaded, checkpoint, prefix)
    own = module.state_dict()
    optional = [re.compile(p) for p in (*_ALWAYS_OPTIONAL, *allow_missing)]

    missing = [k for k in own if k not in state_dict]
    adapter_missing = [k for k in missing if is_adapter_param_name(k)]
    allowed_missing = [k for k in missing if k not in adapter_missing
                       and any(p.fullmatch(k) for p in optional)]
    bad_missing = [k for k in missing
                   if k not in adapter_missing and k not in allowed_missing]
    ignored = [re.compile(p) for p in allow_unexpected]
    state_dict = {k: v for k, v in state_dict.items()
                  if k in own or not any(p.fullmatch(k) for p in ignored)}
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f'{k} (checkpoint {tuple(v.shape)} vs model '
                  f'{tuple(own[k].shape)})' for k, v in state_dict.items()
                  if k in own and v.shape != own[k].shape]
    problems = []
    if bad_missing:
        problems.append(f'missing keys: {_summarise(bad_missing)}')
    if unexpected:
        problems.append(f'unexpected keys: {_summarise(unexpected)}')
    if mismatched:
        problems.append(f'shape mismatch: {_summarise(mismatched)}')
    if problems:
        raise ValueError(
            f'{owner}: checkpoint {checkpoint} (prefix {prefix!r}) does not '
            f'fit {type(module).__name__}: ' + '; '.join(problems) +
            '. Is it the checkpoint of this architecture? Keys that may '
            'legitimately be absent go in init_cfg.allow_missing, keys to ignore in '
            'init_cfg.allow_unexpected.')

    module.load_state_dict(state_dict, strict=False)
    message = (f'{owner}: loaded {len(state_dict)} tensors from {checkpoint}'
               f' (prefix {prefix!r})')
    if adapter_missing:
        layers = sorted({k.rsplit('.quad_', 1)[0] for k in adapter_missing})
        message += (f'; {len(adapter_missing)} quadratic adapter tensors '
                    f'of {len(layers)} layers left at their zero-output '
                    f'initialisation ({_summarise(layers, 4)})')
    if allowed_missing:
        message += ('; allowed missing, left at their initialisation: '
                    f'{_summarise(allowed_missing)}')
    print_log(message, logger='current')
    return adapter_missing


# -- checkpoints of what training changed ------------------------------------

TRAINED_KEY = 'trained_only'


def _fingerprint(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().sum())


def trained_checkpoint(model: nn.Module, trained: Iterable[str],
                       base: dict) -> dict:
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
    kept = {k: v for k, v in state_dict.items()
            if k in trained or k not in params}
    left_out = {k: _fingerprint(v) for k, v in state_dict.items()
                if k not in kept}
    return dict(meta={TRAINED_KEY: dict(base=base, base_fingerprint=left_out)},
                state_dict=kept)


def is_trained_checkpoint(checkpoint: dict) -> bool:
    return TRAINED_KEY in (checkpoint.get('meta') or {})


def complete_trained_checkpoint(model: nn.Module, checkpoint: dict,
                                source: str) -> dict:
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
    absent = [k for k in own if k not in trained and
              k not in info['base_fingerprint']]
    changed = [k for k, value in info['base_fingerprint'].items()
               if k in own and not _close(_fingerprint(own[k]), value)]
    problems = []
    if unexpected:
        problems.append(f'keys not in the model: {_summarise(unexpected)}')
    if absent:
        problems.append(f'model keys it knows nothing of: {_summarise(absent)}')
    if changed:
        problems.append('tensors that differ from the base it was trained '
                        f'over: {_summarise(changed)}')
    if problems:
        raise ValueError(
            f'trained-only checkpoint {source} (base {info["base"]}) does not '
            'fit this model: ' + '; '.join(problems))
    checkpoint['state_dict'] = {**own, **trained}
    return checkpoint


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def load_trained_checkpoint(model: nn.Module, filename: str,
                            map_location: str = 'cpu') -> dict:
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


def load_base(model: nn.Module, checkpoint: dict,
              map_location: str = 'cpu') -> None:
    """Put the base of a trained-only checkpoint into ``model``: its own
    initialisation (``init_cfg`` checkpoints) and the run's ``load_from``."""
    base = checkpoint['meta'][TRAINED_KEY]['base']
    if not getattr(model, '_is_init', False) and hasattr(model, 'init_weights'):
        model.init_weights()
    if base.get('load_from'):
        source = base['load_from']
        state_dict = extract_state_dict(
            _load_checkpoint(source, map_location=map_location), source, None)
        model.load_state_dict(state_dict, strict=False)
