"""One backbone at one precision: its model variants, their train steps in the two
training regimes, saved activations, FLOPs and parameters.

Regimes: *full* (every parameter trains: joint fine-tuning, phase 2 of stage training)
and *frozen* (the primary weights frozen; adapters, norms and the head train: phase 1
of ``QuadraticStageHook``, adapters-only fine-tuning and every PEFT-style comparison).
In the frozen regime the first-order model trains its norms and head, and LoRA (as PEFT
writes it, same placement and rank) stands beside the quadratic adapters.
"""

import contextlib
import copy
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from quadra_mm.adapters import inject_quadratic_adapters, quadratic_layers
from quadra_mm.ops import is_adapter_param_name, saved_tensor_bytes

from .flops import counted_flops, forward_flops
from .harness import repeat_times
from .lora import add_lora, add_peft_lora
from .zoo import ADAPTER, AUTOCAST_DTYPES

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
# Classification heads of the timm/torchvision models (the mmpretrain backbones have none).
_HEADS = ('head', 'fc')


def outputs(out) -> tuple:
    return out if isinstance(out, (tuple, list)) else (out,)


def loss(out) -> torch.Tensor:
    return sum(o.float().square().mean() for o in outputs(out))


def freeze_primary(model: nn.Module) -> nn.Module:
    """The frozen regime: every parameter frozen except those of adapters (quadratic or
    LoRA), norms and the head, as ``QuadraticStageHook``'s phase 1 (its
    ``phase_one_frozen_parameters``: all but adapters and norms)."""
    trainable = {
        id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)
    }
    for name, param in model.named_parameters():
        param.requires_grad_(
            id(param) in trainable
            or is_adapter_param_name(name)
            or 'lora_' in name
            or name.split('.')[0] in _HEADS
        )
    return model


class Bench:
    """One backbone at one precision and placement: the model variants and their
    measurements. ``models`` maps a variant name to its model; the ``*_frozen`` ones
    are in the frozen regime."""

    def __init__(
        self,
        builder: Callable[[], nn.Module],
        targets,
        args,
        dtype: str,
        adapter: Optional[dict] = None,
        stages: Optional[Sequence[int]] = None,
    ) -> None:
        self.device = torch.device(args.device)
        self.memory_format = (
            torch.channels_last if self.device.type == 'cuda' else torch.contiguous_format
        )
        self.autocast_dtype = AUTOCAST_DTYPES[dtype]
        self.adapter = adapter or ADAPTER
        torch.manual_seed(0)
        first_order = builder().to(self.device, memory_format=self.memory_format)
        adapted = copy.deepcopy(first_order)
        inject_quadratic_adapters(adapted, targets, stages=stages, **self.adapter)
        adapted.to(memory_format=self.memory_format)
        # A trained-looking U: export keeps every branch, timings include all of them.
        for _, layer in quadratic_layers(adapted):
            nn.init.normal_(layer.quad_u.weight, std=1e-3)
        self.models = {'first_order': first_order, 'adapted': adapted}
        self.x = torch.randn(
            args.batch_size, 3, args.image_size, args.image_size, device=self.device
        ).contiguous(memory_format=self.memory_format)
        self.args = args

    def add_plain_backward(self) -> None:
        unsaved = copy.deepcopy(self.models['adapted'])
        for _, layer in quadratic_layers(unsaved):
            layer.memory_efficient = False
        self.models['adapted_plain_backward'] = unsaved

    def add_frozen_regime(self, peft_path: Optional[str] = None) -> None:
        """Frozen-regime variants: the first-order model, the adapted one (automatic
        backward: the projections kept), the same always recomputing
        (``memory_efficient=True``), LoRA of the adapters' rank and of twice it on their
        placement, and PEFT's own LoRA where ``peft_path`` is given."""
        adapted = self.models['adapted']
        names = [name for name, _ in quadratic_layers(adapted)]
        recompute = copy.deepcopy(adapted)
        for _, layer in quadratic_layers(recompute):
            layer.memory_efficient = True
        variants = {
            'first_order_frozen': copy.deepcopy(self.models['first_order']),
            'adapted_frozen': copy.deepcopy(adapted),
            'adapted_frozen_recompute': recompute,
        }
        torch.manual_seed(0)
        variants['lora_frozen'] = add_lora(
            copy.deepcopy(self.models['first_order']), names, self.adapter['rank']
        )
        # At twice the rank LoRA keeps as many channels (2r) as the kept projection and
        # costs about the adapters' FLOPs: the like-for-like comparison.
        variants['lora_2r_frozen'] = add_lora(
            copy.deepcopy(self.models['first_order']), names, 2 * self.adapter['rank']
        )
        if peft_path:
            try:
                variants['peft_lora_frozen'] = add_peft_lora(
                    copy.deepcopy(self.models['first_order']),
                    names,
                    self.adapter['rank'],
                    peft_path,
                )
            except ValueError as err:  # PEFT 0.21 refuses depthwise convs at rank 8
                print(f'PEFT LoRA left out: {err}', flush=True)
        for name, model in variants.items():
            self.models[name] = freeze_primary(model).to(memory_format=self.memory_format)

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def repeat_times(self, fns: Dict[str, Callable[[], object]]) -> Dict[str, List[float]]:
        return repeat_times(
            fns, self.device, self.args.warmup, self.args.repeats, self.args.clock_fn
        )

    def _train_step_fn(self, model: nn.Module, compiled: bool = False) -> Callable[[], None]:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        forward = torch.compile(model) if compiled else model

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                out = forward(self.x)
            loss(out).backward()
            optimizer.step()

        return step

    def train_times(
        self, compiled: bool = False, names: Optional[Sequence[str]] = None
    ) -> Dict[str, List[float]]:
        """Step times (per repeat) of the models ``names`` (default: all), and of compiled
        copies of the first-order and the adapted model (keys ``*_compiled``) when
        ``compiled``."""
        fns = {}
        for name in names or self.models:
            self.models[name].train()
            fns[name] = self._train_step_fn(self.models[name])
        if compiled:
            torch._dynamo.reset()
            for name in ('first_order', 'adapted'):
                fns[f'{name}_compiled'] = self._train_step_fn(
                    copy.deepcopy(self.models[name]), True
                )
        return self.repeat_times(fns)

    def peak_memory(self) -> Dict[str, int]:
        """CUDA peak allocated memory of one train step (optimizer state included)."""
        peaks = {}
        for name, model in self.models.items():
            step = self._train_step_fn(model)
            step()
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            step()
            peaks[name] = torch.cuda.max_memory_allocated(self.device)
        return peaks

    def saved_bytes(self) -> Dict[str, int]:
        result = {}
        for name, model in self.models.items():
            model.train()
            with self.autocast():
                result[name] = saved_tensor_bytes(lambda: model(self.x), ignore=model.parameters())[
                    0
                ]
        return result

    def flops(self) -> Dict[str, int]:
        """Forward FLOPs (eval) of the first-order and adapted models, and one train
        forward+backward of every variant (``*_train``: as its backward runs, with the
        recompute where there is one and no weight gradients of frozen layers)."""
        counts = {}
        for name in ('first_order', 'adapted'):
            counts[f'{name}_forward'] = forward_flops(self.models[name], self.x)
        for name, model in self.models.items():
            model.train()
            counts[f'{name}_train'] = counted_flops(lambda: loss(model(self.x)).backward())
            model.zero_grad(set_to_none=True)
        return counts

    def params_overhead(self) -> str:
        """The adapters' parameters as a share of the first-order model's: ``+0.53%``."""
        first_order, adapted = (
            sum(p.numel() for p in self.models[name].parameters())
            for name in ('first_order', 'adapted')
        )
        return f'+{100 * (adapted / first_order - 1):.2f}%'
