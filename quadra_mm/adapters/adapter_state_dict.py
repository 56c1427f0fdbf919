"""Adapter-only state dicts: the adapter weights saved apart from the model, as
PEFT's ``get_peft_model_state_dict``, and loaded back into a model with the same
adapters."""

from typing import Dict, List, Mapping, Tuple

from torch import Tensor, nn

from ..ops import is_adapter_param_name

__all__ = ['adapter_state_dict', 'load_adapter_state_dict']


def adapter_state_dict(model: nn.Module) -> Dict[str, Tensor]:
    """The adapter entries of ``model.state_dict()`` (full names, tensors not copied)."""
    return {k: v for k, v in model.state_dict().items() if is_adapter_param_name(k)}


def load_adapter_state_dict(
    model: nn.Module, state_dict: Mapping[str, Tensor], strict: bool = True
) -> Tuple[List[str], List[str]]:
    """Load adapter weights saved by :func:`adapter_state_dict`.

    Args:
        model: model with the same adapters.
        state_dict: adapter tensors by full name.
        strict: raise when an adapter of ``model`` has no entry or an entry is not an
            adapter of ``model``; nothing is loaded then.

    Returns:
        ``(missing, unexpected)`` key lists (empty when ``strict``).

    Raises:
        RuntimeError: under ``strict``, naming the missing and unexpected keys.
    """
    expected = adapter_state_dict(model).keys()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if strict and (missing or unexpected):
        raise RuntimeError(
            f'adapter state dict does not fit the model: missing keys {missing}, '
            f'unexpected keys {unexpected}'
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=False)
    return missing, unexpected
