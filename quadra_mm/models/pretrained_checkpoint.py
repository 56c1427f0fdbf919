"""Strict loading of a first-order (or QNv2) checkpoint into an adapted
model: the ``Pretrained`` ``init_cfg`` of the quadratic backbones.

mmengine's ``PretrainedInit`` loads with ``strict=False`` and only logs what
did not match; pointing a QNv2 backbone at the wrong checkpoint would then
silently leave it randomly initialised. Here the only keys that may be missing
are the quadratic adapters (left at their zero-output initialisation) and
keys the config explicitly allows; anything else is an error that names them.
"""

import os.path as osp
import re
from typing import Iterable, List, Optional

from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from quadra_mm.ops import is_adapter_param_name

from .state_dict_keys import extract_state_dict, key_problems, summarise_keys

# torchvision/timm-era checkpoints predate BatchNorm's counter buffer.
_ALWAYS_OPTIONAL = (r'(.*\.)?num_batches_tracked$',)


def load_adapted_checkpoint(
    module: nn.Module,
    checkpoint: str,
    prefix: Optional[str] = None,
    map_location: str = 'cpu',
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
    owner: str = 'QuadraNetV2',
) -> List[str]:
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
    if isinstance(checkpoint, str) and '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'{owner}: init_cfg.checkpoint {checkpoint!r} is not a file')
    loaded = _load_checkpoint(checkpoint, map_location=map_location)
    state_dict = extract_state_dict(loaded, checkpoint, prefix)
    own = module.state_dict()
    optional = [re.compile(p) for p in (*_ALWAYS_OPTIONAL, *allow_missing)]

    missing = [k for k in own if k not in state_dict]
    adapter_missing = [k for k in missing if is_adapter_param_name(k)]
    allowed_missing = [
        k for k in missing if k not in adapter_missing and any(p.fullmatch(k) for p in optional)
    ]
    bad_missing = [k for k in missing if k not in adapter_missing and k not in allowed_missing]
    ignored = [re.compile(p) for p in allow_unexpected]
    state_dict = {
        k: v for k, v in state_dict.items() if k in own or not any(p.fullmatch(k) for p in ignored)
    }
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f'{k} (checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)})'
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = key_problems(
        ('missing keys', bad_missing),
        ('unexpected keys', unexpected),
        ('shape mismatch', mismatched),
    )
    if problems:
        raise ValueError(
            f'{owner}: checkpoint {checkpoint} (prefix {prefix!r}) does not '
            f'fit {type(module).__name__}: {problems}. Is it the checkpoint '
            'of this architecture? Keys that may legitimately be absent go '
            'in init_cfg.allow_missing, keys to ignore in '
            'init_cfg.allow_unexpected.'
        )

    module.load_state_dict(state_dict, strict=False)
    message = f'{owner}: loaded {len(state_dict)} tensors from {checkpoint} (prefix {prefix!r})'
    if adapter_missing:
        layers = sorted({k.rsplit('.quad_', 1)[0] for k in adapter_missing})
        message += (
            f'; {len(adapter_missing)} quadratic adapter tensors '
            f'of {len(layers)} layers left at their zero-output '
            f'initialisation ({summarise_keys(layers, 4)})'
        )
    if allowed_missing:
        message += (
            f'; allowed missing, left at their initialisation: {summarise_keys(allowed_missing)}'
        )
    print_log(message, logger='current')
    return adapter_missing
