"""LoRA on a conv as PEFT writes it (``peft.tuners.lora.layer.Conv2d``), the adapter
library users compare with: ``y = L(x) + (alpha / r) B(A(x))`` with
``A = Conv2d(in, r, k, stride, padding, dilation)`` on ``L``'s geometry,
``B = Conv2d(r, out, 1)``, no biases, ``B`` zero-initialised; placed on the layers the
quadratic adapters take. PEFT's own LoRA, where it can be imported, is the cross-check.
"""

import math
import re
import sys
from typing import Iterable, Optional

from torch import Tensor, nn

from quadra_mm.adapters import replace_module


class LoRAConv2d(nn.Module):
    """``base_layer(x) + scaling * lora_B(lora_A(x))`` (PEFT's names, dropout 0)."""

    def __init__(self, base_layer: nn.Conv2d, rank: int, alpha: Optional[float] = None) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.Conv2d(
            base_layer.in_channels,
            rank,
            base_layer.kernel_size,
            base_layer.stride,
            base_layer.padding,
            base_layer.dilation,
            bias=False,
        ).to(base_layer.weight)
        self.lora_B = nn.Conv2d(rank, base_layer.out_channels, 1, bias=False).to(base_layer.weight)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = (rank if alpha is None else alpha) / rank

    def forward(self, x: Tensor) -> Tensor:
        # PEFT: result = base_layer(x); result = result + lora_B(lora_A(dropout(x))) * scaling
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling


def add_lora(model: nn.Module, names: Iterable[str], rank: int) -> nn.Module:
    """Wrap the convs ``names`` of ``model`` (in place) in :class:`LoRAConv2d`."""
    for name in names:
        replace_module(model, name, LoRAConv2d(model.get_submodule(name), rank))
    return model


def add_peft_lora(model: nn.Module, names: Iterable[str], rank: int, peft_path: str) -> nn.Module:
    """PEFT's own LoRA on the convs ``names`` (``peft.inject_adapter_in_model``), PEFT
    imported from ``peft_path`` (installed beside the project: its ``transformers``
    breaks ``mmpretrain`` 1.2.0's import, so only after mmpretrain is loaded)."""
    if peft_path not in sys.path:
        sys.path.append(peft_path)
    from peft import LoraConfig, inject_adapter_in_model

    # A string is matched as a whole-name regex.
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        lora_dropout=0.0,
        target_modules='|'.join(re.escape(name) for name in names),
    )
    return inject_adapter_in_model(config, model)
