"""FLOP counting of adapted models with mmengine's complexity analysis.

``mmengine.analysis.get_model_complexity_info`` (what mmdet's
``tools/analysis_tools/get_flops.py`` runs) traces the model with
``torch.jit`` and counts each traced op with a handle; it counts one
multiply-add as one FLOP (torch's ``FlopCounterMode`` counts two). Two
things kept it from counting the quadratic adapters:

* the memory-efficient branch runs as an autograd Function, which a trace
  records as one opaque ``prim::PythonOp``; the quadratic layers run the
  branch's own ops while traced (:mod:`quadra_mm.ops.layers`);
* its ``aten::matmul`` handle counts ``prod(a.shape) * b.shape[-1]``, which
  drops the batch dimensions of ``b`` when ``a`` is broadcast: the 1x1
  projection ``U`` is such a product (``(out, r) @ (N, r, HW)``).
  :func:`matmul_flop_jit` counts broadcast batches.
"""
import math
from typing import Any, List

import torch
from mmengine.analysis import complexity_analysis
from mmengine.analysis.jit_handles import get_shape

__all__ = ['matmul_flop_jit', 'install']


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


def install() -> None:
    """Use :func:`matmul_flop_jit` in every ``FlopAnalyzer`` (and so in
    ``get_model_complexity_info``)."""
    for op in ('aten::matmul', 'aten::mm'):
        complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS[op] = matmul_flop_jit
