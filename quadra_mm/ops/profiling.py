"""Measuring what autograd keeps for backward."""

from typing import Any, Callable, Dict, Iterable, Tuple

import torch
from torch import Tensor

__all__ = ['saved_tensor_bytes']


def saved_tensor_bytes(fn: Callable[[], Any], ignore: Iterable[Tensor] = ()) -> Tuple[int, Any]:
    """Run ``fn()`` and count the bytes of the tensors autograd saves for backward.

    Each storage is counted once (keyed by its data pointer), so a tensor saved by
    several ops, or views of one storage, cost what they cost in memory.

    Args:
        fn: the forward pass to measure.
        ignore: tensors whose storages are not counted, typically the model's
            parameters: they are resident whether saved or not. Low-precision copies
            that autocast makes of them are counted.

    Returns:
        ``(bytes, result)``: the count and ``fn``'s result, which holds the graph; keep
        it to call backward, drop it to free the saved tensors.
    """
    ignored = {t.untyped_storage().data_ptr() for t in ignore}
    storages: Dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in ignored:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return sum(storages.values()), result
