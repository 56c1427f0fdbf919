"""Checkpoints that plain ``torch.load`` reads under torch >= 2.6."""

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from quadra_mm.registry import register_hook

# A HistoryBuffer stored as plain types: {_HISTORY_BUFFER: {...}}.
_HISTORY_BUFFER = '__history_buffer__'


def to_weights_only(value: Any) -> Any:
    """``value`` (a checkpoint or part of one) with mmengine's and numpy's
    objects replaced by types ``torch.load(weights_only=True)`` accepts.

    A ``HistoryBuffer`` becomes ``{'__history_buffer__': dict(log_history=
    <tensor>, count_history=<tensor>, max_length=<int>)}`` (the tensors hold
    its numpy arrays bit for bit); a numpy array becomes a tensor and a numpy
    scalar a python number. Containers are rebuilt (an ``OrderedDict`` with
    its attributes, e.g. a state dict's ``_metadata``), tensors and python
    scalars are kept as they are.
    """
    if isinstance(value, HistoryBuffer):
        return {
            _HISTORY_BUFFER: dict(
                log_history=torch.from_numpy(np.array(value._log_history)),
                count_history=torch.from_numpy(np.array(value._count_history)),
                max_length=int(value.max_length),
            )
        }
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, OrderedDict):
        converted = OrderedDict((k, to_weights_only(v)) for k, v in value.items())
        # A state dict's `_metadata` (module versions) that
        # `load_state_dict` reads.
        converted.__dict__.update(value.__dict__)
        return converted
    if isinstance(value, dict):
        return {k: to_weights_only(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(to_weights_only(v) for v in value)
    return value


def restore_history_buffers(value: Any) -> Any:
    """Undo :func:`to_weights_only` for the ``HistoryBuffer`` s, which
    mmengine's ``MessageHub.load_state_dict`` needs as such."""
    if isinstance(value, dict):
        if set(value) == {_HISTORY_BUFFER}:
            state = value[_HISTORY_BUFFER]
            return HistoryBuffer(
                state['log_history'].numpy(), state['count_history'].numpy(), state['max_length']
            )
        return type(value)((k, restore_history_buffers(v)) for k, v in value.items())
    return value


@register_hook
class WeightsOnlyCheckpointHook(Hook):
    """Write checkpoints that ``torch.load`` reads with its default
    ``weights_only=True`` (torch >= 2.6), without mmengine or quadra_mm.

    mmengine 0.10.7 stores the message hub's ``HistoryBuffer`` objects and
    numpy values in every checkpoint; torch >= 2.6 refuses them unless the
    loader allow-lists them, which tools that call ``torch.load`` themselves
    (mmdet/mmpretrain ``publish_model.py``, ``DetInferencer(weights=...)``
    without a config, which reads the config from the checkpoint before it
    can import ``quadra_mm``) do not do. Before a checkpoint is saved, this
    hook converts those values with :func:`to_weights_only`; when a
    checkpoint is loaded (``resume``, ``load_from``), the history buffers are
    restored, so a resumed run continues its smoothed logs as before.
    """

    # After every hook that adds to the checkpoint (EMA weights, ...).
    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.update(to_weights_only(checkpoint))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'message_hub' in checkpoint:
            checkpoint['message_hub'] = restore_history_buffers(checkpoint['message_hub'])
