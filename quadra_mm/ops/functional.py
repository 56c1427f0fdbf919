"""Shape helpers shared by the training layers and the exported inference modules."""

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .autograd import autocast_input

__all__ = [
    'fuse_projections',
    'split_projections',
    'pointwise_conv',
    'pointwise_conv_backward',
    'adapter_padding',
    'subsampled_geometry',
    'range_scale',
]

_Pair = Tuple[int, int]


def fuse_projections(w_a: Tensor, w_b: Tensor, interleave: bool, dim: int = 0) -> Tensor:
    """Stack the weights of ``A`` and ``B`` so one conv/linear computes both.

    Args:
        w_a, w_b: weights of equal shape ``(r, ...)``.
        interleave: ``False``: ``[A; B]`` (dense projections, output split in halves).
            ``True``: ``[a_0, b_0, a_1, b_1, ...]``, for grouped (depthwise) ``A``/``B``
            with one output each per group: a grouped conv with ``groups`` unchanged
            then gives every group its own ``(a_g, b_g)`` pair.
        dim: the dimension to stack along; the backward stacks the gradients of the
            two outputs along their channel dimension the same way.

    Returns:
        weight of shape ``(2r, ...)``.
    """
    if interleave:
        dim = dim % w_a.dim()
        return torch.stack((w_a, w_b), dim=dim + 1).flatten(dim, dim + 1)
    return torch.cat((w_a, w_b), dim=dim)


def split_projections(ab: Tensor, dim: int, interleave: bool) -> Tuple[Tensor, Tensor]:
    """Inverse of :func:`fuse_projections` on the output: ``(A(x), B(x))`` from ``ab``.

    Args:
        ab: output of the fused projection, ``2r`` channels along ``dim``.
        dim: channel dimension (1 for NCHW convs, -1 for linears).
        interleave: as given to :func:`fuse_projections`.
    """
    if interleave:
        dim = dim % ab.dim()
        a, b = ab.unflatten(dim, (-1, 2)).unbind(dim + 1)
        return a, b
    a, b = ab.chunk(2, dim=dim)
    return a, b


def range_scale(ab: Tensor, limit: Optional[float], dim: int) -> Optional[Tensor]:
    """Per-sample power of two ``c >= 1`` with ``max |ab| / c <= limit``; ``None`` without a limit.

    The interaction of the quadratic term grows as ``|x|^2`` while ``L`` grows as
    ``|x|``: under float16 autocast ``A(x) * B(x)`` overflows 65504 from input sizes of a
    few hundred, and ``U(inf) = NaN`` even while ``U = 0``. The quadratic term therefore computes
    ``c * U(phi(a / c, b / c))``: with ``c = 1`` (every activation under ``limit``) that is
    the plain quadratic term bit for bit (division and product by a power of two are exact),
    above it the interaction stays under ``limit^2`` and the quadratic term grows like ``L``.
    ``c`` depends only on the values, never on the dtype, so a model computes the same
    function in fp32, bf16 and fp16. It is piecewise constant in ``x``: its derivative
    is zero wherever it is defined, and the quadratic term's gradient formulas hold as they are.

    Args:
        ab: the fused projection output.
        limit: the interaction's :attr:`~quadra_mm.ops.interactions.Interaction.range_limit`.
        dim: the first dimension reduced over: 1 for a conv's ``(N, 2r, H, W)`` (one
            ``c`` per image), ``-1`` for a linear's tokens (one ``c`` per token).

    Returns:
        fp32 ``c``, broadcastable to ``ab`` (size 1 in the reduced dimensions).
    """
    if limit is None:
        return None
    dims = tuple(range(dim % ab.dim(), ab.dim()))
    peak = ab.detach().abs().amax(dim=dims, keepdim=True).float()
    return torch.exp2(torch.ceil(torch.log2(peak / limit)).clamp_min_(0))


def pointwise_conv(
    h: Tensor,
    weight: Tensor,
    groups: int = 1,
    out: Optional[Tensor] = None,
    sample_scale: Optional[Tensor] = None,
) -> Tensor:
    """``c * F.conv2d(h, weight, groups=groups)`` for a 1x1 ``weight`` without bias; with
    ``out``, the result is added into ``out`` in place (``out`` is returned).

    ``c`` is ``sample_scale`` (``(N, 1, 1, 1)``, from :func:`range_scale`), 1 if ``None``;
    it goes into the per-image matrix of the batched product, or multiplies the conv's
    result as it is added (the product ``c * h`` itself could overflow).

    An NCHW-contiguous ``h`` with ``groups == 1`` goes through a batched matrix product
    over channels instead: CPU conv kernels run an NCHW 1x1 conv from few channels several
    times slower than the GEMM (8 -> 96 channels on 8x56x56, one thread: 4.4 ms as a
    conv, 0.9 ms as a matmul). The weight is expanded over the batch for ``bmm``:
    ``torch.matmul`` would fold the batch by transposing and copy the whole output.
    Adding into ``out`` with ``baddbmm_`` also saves the fresh output allocation (page
    faults on CPU) and the pass of a separate add. Channels-last convs are GEMMs already.
    """
    if groups != 1 or h.is_contiguous(memory_format=torch.channels_last):
        result = F.conv2d(h, weight, groups=groups)
        if out is None:
            return result if sample_scale is None else result.mul_(sample_scale.to(result.dtype))
        # Returning add_'s result would hide from dynamo that out (marked dirty in the
        # memory-efficient Function) is returned.
        if sample_scale is None:
            out.add_(result)
        else:
            out.addcmul_(result, sample_scale.to(out.dtype))
        return out
    rows = h.flatten(2)
    matrix = weight.flatten(1).expand(h.shape[0], -1, -1)
    if sample_scale is not None:
        matrix = matrix * sample_scale.view(-1, 1, 1)
    if out is None:
        return torch.bmm(matrix, rows).unflatten(2, h.shape[2:])
    # In-place ops are not autocast ops: compute in out's dtype (the autocast dtype there).
    out.flatten(2).baddbmm_(matrix.to(out.dtype), rows.to(out.dtype))
    return out


def pointwise_conv_backward(
    grad: Tensor,
    h: Tensor,
    weight: Tensor,
    groups: int,
    output_mask: Tuple[bool, bool],
    sample_scale: Optional[Tensor] = None,
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(grad_ch, grad_weight)`` of :func:`pointwise_conv`, on the same path as its forward.

    With ``W`` of shape ``(O, R)``, ``h`` viewed as ``(N, R, P)`` and ``c`` the
    ``sample_scale``: ``grad_ch = W^T grad`` is the gradient with respect to ``c * h``
    (``c`` cancels against the ``1 / c`` of :func:`range_scale`'s ``a / c``, so it is what
    the interaction's backward takes), and ``grad_W = sum_n c_n grad_n h_n^T`` (``c``
    applied in fp32 after the product, where it cannot overflow). Under autocast (the
    caller re-enters the forward's state) the products run in the autocast dtype, as
    the forward.

    Args:
        grad: gradient with respect to the output.
        h, weight, groups, sample_scale: the forward's arguments.
        output_mask: which of ``(grad_ch, grad_weight)`` to compute; the others are ``None``.
    """
    if groups != 1 or h.is_contiguous(memory_format=torch.channels_last):
        peak = None
        if sample_scale is not None and output_mask[1]:
            # Scale h by c / max(c) <= 1 (exact, no overflow) and the sum by max(c).
            peak = sample_scale.amax()
            h = h * (sample_scale / peak).to(h.dtype)
        # convolution_backward is not an autocast op: cast its operands like the forward's conv.
        grad_h, grad_weight, _ = torch.ops.aten.convolution_backward(
            autocast_input(grad),
            autocast_input(h),
            autocast_input(weight),
            None,
            [1, 1],
            [0, 0],
            [1, 1],
            False,
            [0, 0],
            groups,
            [output_mask[0], output_mask[1], False],
        )
        if peak is not None:
            grad_weight = grad_weight.float() * peak
        return grad_h, grad_weight
    grad_rows = grad.flatten(2)
    grad_h = grad_weight = None
    if output_mask[0]:
        matrix = weight.flatten(1).t().expand(h.shape[0], -1, -1)
        grad_h = torch.bmm(matrix, grad_rows).unflatten(2, h.shape[2:])
    if output_mask[1]:
        per_image = torch.bmm(grad_rows, h.flatten(2).transpose(1, 2))
        if sample_scale is not None:
            per_image = per_image.float() * sample_scale.view(-1, 1, 1)
        grad_weight = per_image.sum(0).view(weight.shape)
    return grad_h, grad_weight


def adapter_padding(
    kernel_size: Tuple[int, int],
    dilation: Tuple[int, int],
    layer_kernel_size: Tuple[int, int],
    layer_dilation: Tuple[int, int],
    layer_padding: Union[str, Tuple[int, int]],
    name: Optional[str] = None,
) -> Tuple[int, int]:
    """Padding that gives the adapter conv the output shape of the layer ``L``.

    With the same stride, ``floor((n + 2p - d(k-1) - 1)/stride) + 1`` agrees for every
    input size ``n`` iff ``2p - d(k-1)`` agrees, so per spatial dim
    ``p_A = (2 p_L - d_L (k_L - 1) + d (k - 1)) / 2``. ``'valid'`` means ``p_L = 0``;
    ``'same'`` (stride 1 only) means ``2 p_L = d_L (k_L - 1)``, i.e. ``p_A = d (k - 1) / 2``.

    Raises:
        ValueError: ``p_A`` is negative or not an integer (message names ``name``).
    """
    padding = []
    for dim in range(2):
        span_layer = layer_dilation[dim] * (layer_kernel_size[dim] - 1)
        if layer_padding == 'same':
            twice_pad_layer = span_layer
        elif layer_padding == 'valid':
            twice_pad_layer = 0
        else:
            twice_pad_layer = 2 * layer_padding[dim]
        twice_pad = twice_pad_layer - span_layer + dilation[dim] * (kernel_size[dim] - 1)
        if twice_pad < 0 or twice_pad % 2:
            raise ValueError(
                f'{name or "layer"}: an adapter with kernel_size={tuple(kernel_size)}, '
                f'dilation={tuple(dilation)} cannot keep the output shape of the layer '
                f'(kernel_size={tuple(layer_kernel_size)}, dilation={tuple(layer_dilation)}, '
                f'padding={layer_padding}): it needs padding {twice_pad / 2} in dim {dim}, '
                f'which is not a non-negative integer'
            )
        padding.append(twice_pad // 2)
    return padding[0], padding[1]


def subsampled_geometry(
    stride: _Pair, padding: _Pair, dilation: _Pair
) -> Tuple[_Pair, _Pair, _Pair, _Pair]:
    """``(step, stride, padding, dilation)`` of the same conv on ``x[..., ::step[0], ::step[1]]``.

    A conv with stride ``s``, dilation ``d`` and zero padding ``p`` reads input row
    ``s i + d j - p`` for output row ``i`` and tap ``j``: with ``g = gcd(s, d, p)`` only
    rows that are multiples of ``g``. On every ``g``-th row it is the conv with stride
    ``s/g``, dilation ``d/g`` and padding ``p/g``, with the same output size and the same
    products. The adapter of a strided 3x3 (ResNet's bottleneck ``conv2``, ``s = d = p = 2``)
    is such a conv; its backward on the full input takes a slow oneDNN path (8x128x56x56
    -> 16 channels, one thread, fp32: 46.5 ms; on the subsampled input, with the gradient
    scattered back: 13.4 ms). ``step`` is 1 where nothing is skipped.
    """
    step = tuple(math.gcd(math.gcd(s, d), p) for s, d, p in zip(stride, dilation, padding))
    return (
        step,
        tuple(s // g for s, g in zip(stride, step)),
        tuple(p // g for p, g in zip(padding, step)),
        tuple(d // g for d, g in zip(dilation, step)),
    )
