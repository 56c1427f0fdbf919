"""FLOP counts of the benchmark: forward (mmengine's counter where installed, as mmdet's
``get_flops.py``), forward+backward of a train step, and per adapter (the package's own
count, :func:`quadra_mm.adapters.pruning.adapter_flops`)."""

from typing import Callable, Dict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from quadra_mm.adapters.pruning import adapter_flops
from quadra_mm.deploy import export_for_inference


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """grad_input and grad_weight each cost the forward's FLOPs. torch's own formula
    drops ``groups`` for grad_weight, counting a depthwise conv's backward ``groups``
    times too high (96x on ConvNeXt-T's first stage)."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


FLOP_FORMULAS = {torch.ops.aten.convolution_backward: _conv_backward_flop}


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything ``fn()`` runs (backward included), ``FlopCounterMode`` with
    the grouped-conv backward fixed."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()


def forward_counter() -> str:
    """Which counter :func:`forward_flops` uses."""
    try:
        import mmengine.analysis  # noqa: F401
    except ModuleNotFoundError:
        return 'FlopCounterMode'
    return 'mmengine'


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Eval-mode forward FLOPs of the first image of ``x``, with :func:`forward_counter`'s
    counter (mmengine counts a multiply-add once, ``FlopCounterMode`` twice; the tables
    show ratios)."""
    model.eval()
    image = x[:1]
    if forward_counter() == 'mmengine':
        from mmengine.analysis import FlopAnalyzer

        # As get_flops.py: a jit trace of the forward. Importing quadra_mm (done by
        # quadra_mm.adapters) makes it count the quadratic branch (quadra_mm.flops).
        analyzer = FlopAnalyzer(model, (image,))
        return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()
    with torch.no_grad():
        return counted_flops(lambda: model(image))


def adapter_forward_flops(model: nn.Module, x: torch.Tensor) -> Dict[str, int]:
    """Forward FLOPs ``f_i`` of each adapter of ``model`` (first image of ``x``, the
    exported form, mmengine's counter): :func:`~quadra_mm.adapters.pruning.adapter_flops`."""
    from mmengine.analysis import FlopAnalyzer

    exported = export_for_inference(model)
    exported.eval()  # not chained: mmpretrain's backbones' train() returns None

    def by_module(module: nn.Module) -> Dict[str, int]:
        analyzer = FlopAnalyzer(module, (x[:1],))
        return dict(
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_module()
        )

    return adapter_flops(exported, by_module)[0]
