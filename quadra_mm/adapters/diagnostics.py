"""Which quadratic layer made a non-finite value first (pure PyTorch)."""

from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from .surgery import quadratic_layers

__all__ = ['first_nonfinite_layer']


def first_nonfinite_layer(model: nn.Module, run: Callable[[], object]) -> Optional[Tuple[str, str]]:
    """Run ``run()`` (a forward of ``model``) with a check on every quadratic layer and
    return ``(name, what)`` of the first one, in execution order, whose output holds a
    NaN or an infinity while its input is finite; ``None`` if there is none.

    ``what`` describes the input and output (dtype, max ``|x|``, non-finite count), which
    tells an overflow of the quadratic term from a bad input. Checks cost a host sync per layer,
    so this is for diagnosis after the fact, not for every step.
    """
    found: List[Tuple[str, str]] = []

    def check(name: str):
        def hook(module: nn.Module, args, output) -> None:
            x = args[0]
            if found or not torch.is_tensor(output) or not torch.isfinite(x).all():
                return
            bad = (~torch.isfinite(output)).sum().item()
            if bad:
                peak = x.detach().abs().max().item()
                found.append(
                    (
                        name,
                        f'input {x.dtype} max |x| = {peak:.4g}, output '
                        f'{output.dtype} with {bad} non-finite of {output.numel()}',
                    )
                )

        return hook

    handles = [layer.register_forward_hook(check(name)) for name, layer in quadratic_layers(model)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None
