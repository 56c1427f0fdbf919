"""The state dict a loaded checkpoint holds, and the words for the keys in
which it does not fit a model: what both checkpoint loaders
(:mod:`.pretrained_checkpoint`, :mod:`.trained_checkpoint`) report."""

import re
from typing import Dict, Optional, Sequence, Tuple

import torch


def summarise_keys(keys: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` keys, comma-separated, and how many there are in
    all when that is more."""
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')


def key_problems(*groups: Tuple[str, Sequence[str]]) -> str:
    """``'<what>: <keys>; ...'`` for each ``(what, keys)`` group that holds
    keys (summarised by :func:`summarise_keys`); ``''`` when none does."""
    return '; '.join(f'{what}: {summarise_keys(keys)}' for what, keys in groups if keys)


def extract_state_dict(
    checkpoint: dict, source: str, prefix: Optional[str]
) -> Dict[str, torch.Tensor]:
    """The (prefix-stripped) state dict held by a loaded checkpoint object:
    its ``state_dict`` or ``model`` entry, or the object itself, with a DDP
    ``module.`` prefix removed.

    Args:
        checkpoint: what ``torch.load`` returned.
        source: the file, for messages.
        prefix: keep only keys under this prefix and strip it.

    Raises:
        ValueError: not a state dict, or no key under ``prefix`` (the
            checkpoint's top-level key groups are named).
    """
    state_dict = checkpoint
    for container in ('state_dict', 'model'):
        if (
            isinstance(state_dict, dict)
            and container in state_dict
            and isinstance(state_dict[container], dict)
        ):
            state_dict = state_dict[container]
            break
    if not isinstance(state_dict, dict):
        raise ValueError(f'checkpoint {source} holds a {type(state_dict)}, not a state dict')
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not selected:
            groups = sorted({k.split('.')[0] + '.' for k in state_dict})
            raise ValueError(
                f"checkpoint {source} has no keys under prefix '{prefix}' "
                f'(its top-level groups: {summarise_keys(groups)})'
            )
        state_dict = selected
    return state_dict
