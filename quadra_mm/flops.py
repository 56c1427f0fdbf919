"""FLOP counting of adapted models with mmengine's complexity analysis.

``mmengine.analysis.get_model_complexity_info`` (what mmdet's
``tools/analysis_tools/get_flops.py`` runs) traces the model with
``torch.jit`` and counts each traced op with a handle; it counts one
multiply-add as one FLOP (torch's ``FlopCounterMode`` counts two). Two
things kept it from counting the quadratic adapters:

* the memory-efficient quadratic term runs as an autograd Function, which a
  trace records as one opaque ``prim::PythonOp``; the quadratic layers run
  the term's own ops while traced (:mod:`quadra_mm.ops.layers`);
* its ``aten::matmul`` handle counts ``prod(a.shape) * b.shape[-1]``, which
  drops the batch dimensions of ``b`` when ``a`` is broadcast: the 1x1
  projection ``U`` is such a product (``(out, r) @ (N, r, HW)``).
  :func:`matmul_flop_jit` counts broadcast batches.

mmcv's deformable convs (``L`` of a DCN ResNet's quadratic layers) are
autograd Functions too, traced as ``prim::PythonOp`` nodes that mmengine
skips; :func:`deform_conv_flop_jit` counts them.
"""

import functools
import math
from typing import Any, List

import torch
from mmengine.analysis import complexity_analysis
from mmengine.analysis.jit_handles import conv_flop_count, get_shape

__all__ = ['matmul_flop_jit', 'deform_conv_flop_jit', 'install']

# Traced name of mmcv's deformable conv Functions -> index of the weight
# among their tensor inputs (x, offset[, mask], weight[, bias]).
_DEFORM_CONV_OPS = {
    'prim::PythonOp.DeformConv2dFunction': 2,
    'prim::PythonOp.ModulatedDeformConv2dFunction': 3,
}


def matmul_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of ``torch.matmul(a, b)`` with numpy broadcasting:
    ``prod(broadcast batch dims) * n * k * m`` for ``(..., n, k) @ (..., k,
    m)``; 1-d operands are promoted as matmul promotes them."""
    a, b = (list(get_shape(v)) for v in inputs[:2])
    if len(a) == 1:
        a = [1, a[0]]
    if len(b) == 1:
        b = [b[0], 1]
    if a[-1] != b[-2]:
        raise ValueError(f'matmul of shapes {a} and {b}')
    batch = torch.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return math.prod(batch) * a[-2] * a[-1] * b[-1]


def deform_conv_flop_jit(inputs: List[Any], outputs: List[Any], weight_index: int) -> int:
    """Multiply-adds of an mmcv deformable conv, counted as those of the
    conv of the same geometry (what mmcv's own FLOP counter does):
    ``N * prod(weight.shape) * H_out * W_out``. The bilinear sampling at the
    offsets (and the modulation) is not counted."""
    x, weight = get_shape(inputs[0]), get_shape(inputs[weight_index])
    return conv_flop_count(x, weight, get_shape(outputs[0]))


def install() -> None:
    """Use :func:`matmul_flop_jit` and :func:`deform_conv_flop_jit` in every
    ``FlopAnalyzer`` (and so in ``get_model_complexity_info``)."""
    handles = complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS
    for op in ('aten::matmul', 'aten::mm'):
        handles[op] = matmul_flop_jit
    for op, weight_index in _DEFORM_CONV_OPS.items():
        handles[op] = functools.partial(deform_conv_flop_jit, weight_index=weight_index)
