"""One GPU kernel for the exported quadratic term's epilogue: ``y += U'(phi(a, b))``.

After the fused ``A``/``B`` conv (``ab``, ``2r`` channels), eager PyTorch runs ``phi``,
the ``r -> out`` pointwise product and the residual add as separate passes over
activations (an r-channel ``phi`` tensor and an out-channel quadratic-term output are written
and read back). :func:`fused_quadratic_term_add_` reads ``a``, ``b`` once per pixel, forms
``phi`` in registers and adds ``sum_i U'[o, i] phi_i`` into ``y`` in place, in fp32.

Triton is imported lazily (it ships with torch's CUDA wheels); on CPU the eager path
runs. ``TRITON_INTERPRET=1`` (set before triton is imported) runs the kernel on CPU
tensors, slowly, for tests.
"""

from typing import Optional, Tuple

from torch import Tensor

from .interactions import (
    Interaction,
    LinearInteraction,
    PolyInteraction,
    QuadraticInteraction,
    RBFInteraction,
)

__all__ = ['fused_quadratic_term_add_', 'interaction_params']

_INTERACTION_IDS = {
    QuadraticInteraction: 0,
    LinearInteraction: 1,
    RBFInteraction: 2,
    PolyInteraction: 3,
}


def interaction_params(interaction: Interaction) -> Tuple[int, float, int]:
    """``(kernel id, real parameter, integer parameter)`` of ``phi`` for the kernel:
    rbf passes ``-1 / (2 sigma^2)``, poly passes ``c`` and the degree."""
    kind = _INTERACTION_IDS[type(interaction)]
    if isinstance(interaction, RBFInteraction):
        return kind, -0.5 / interaction.sigma**2, 0
    if isinstance(interaction, PolyInteraction):
        return kind, interaction.c, interaction.degree
    return kind, 0.0, 0


def _build_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def quadratic_term_add_kernel(
        y_ptr,
        ab_ptr,
        u_ptr,
        scale_ptr,
        num_pixels,
        out_channels,
        y_stride_n,
        y_stride_c,
        y_stride_p,
        ab_stride_n,
        ab_stride_c,
        ab_stride_p,
        scale_stride_n,
        scale_stride_p,
        real_param,
        RANK: tl.constexpr,
        RANK_PAD: tl.constexpr,
        INTERACTION: tl.constexpr,
        DEGREE: tl.constexpr,
        HAS_SCALE: tl.constexpr,
        BLOCK_P: tl.constexpr,
        BLOCK_O: tl.constexpr,
    ):
        # One program: BLOCK_P pixels of one image, every output channel.
        n = tl.program_id(1)
        pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        ranks = tl.arange(0, RANK_PAD)
        pix_ok = pix < num_pixels
        ab_mask = (ranks[:, None] < RANK) & pix_ok[None, :]
        ab_offs = n * ab_stride_n + ranks[:, None] * ab_stride_c + pix[None, :] * ab_stride_p
        a = tl.load(ab_ptr + ab_offs, mask=ab_mask, other=0.0).to(tl.float32)
        b = tl.load(ab_ptr + ab_offs + RANK * ab_stride_c, mask=ab_mask, other=0.0).to(tl.float32)
        if HAS_SCALE:  # the range scale c (ops.functional.range_scale): c U(phi(a / c, b / c))
            scale = tl.load(
                scale_ptr + n * scale_stride_n + pix * scale_stride_p, mask=pix_ok, other=1.0
            )
            a = a / scale[None, :]
            b = b / scale[None, :]
        if INTERACTION == 0:
            phi = a * b
        elif INTERACTION == 1:
            phi = a + b
        elif INTERACTION == 2:
            phi = tl.exp((a - b) * (a - b) * real_param)
        else:
            base = a * b + real_param
            phi = base
            for _ in tl.static_range(DEGREE - 1):
                phi = phi * base
        # Padded ranks must not contribute (rbf gives exp(0) = 1 there).
        phi = tl.where(ab_mask, phi, 0.0)
        for o_start in range(0, out_channels, BLOCK_O):
            outs = o_start + tl.arange(0, BLOCK_O)
            outs_ok = outs < out_channels
            u = tl.load(
                u_ptr + outs[:, None] * RANK + ranks[None, :],
                mask=outs_ok[:, None] & (ranks[None, :] < RANK),
                other=0.0,
            ).to(tl.float32)
            term = tl.sum(u[:, :, None] * phi[None, :, :], axis=1)
            if HAS_SCALE:
                term = term * scale[None, :]
            y_offs = n * y_stride_n + outs[:, None] * y_stride_c + pix[None, :] * y_stride_p
            y_mask = outs_ok[:, None] & pix_ok[None, :]
            y = tl.load(y_ptr + y_offs, mask=y_mask, other=0.0)
            tl.store(y_ptr + y_offs, (y.to(tl.float32) + term).to(y.dtype), mask=y_mask)

    return quadratic_term_add_kernel


_KERNEL = None


def _pixel_strides(t: Tensor) -> Tuple[int, int, int]:
    """``(n, channel, pixel)`` strides of an NC* tensor whose spatial dims flatten into
    one pixel index (contiguous or channels-last)."""
    if t.dim() == 2:
        return 0, t.stride(1), t.stride(0)
    spatial = t.shape[2:]
    for dim in range(2, t.dim() - 1):
        if t.shape[dim] > 1 and t.stride(dim) != t.stride(dim + 1) * t.shape[dim + 1]:
            raise ValueError(
                f'fused_quadratic_term_add_: spatial dims of a tensor of shape '
                f'{tuple(t.shape)} and strides {t.stride()} do not flatten '
                f'({tuple(spatial)})'
            )
    return t.stride(0), t.stride(1), t.stride(-1)


def fused_quadratic_term_add_(
    y: Tensor,
    ab: Tensor,
    weight_u: Tensor,
    interaction: Interaction,
    sample_scale: Optional[Tensor] = None,
    block_pixels: int = 64,
    block_out: int = 16,
) -> Tensor:
    """``y += c * weight_u @ phi(a / c, b / c)`` per pixel, in one kernel, in place.

    Args:
        y: primary output, ``(N, O, *spatial)`` (NCHW or channels-last) or ``(T, O)``
            rows (a linear layer's tokens flattened).
        ab: fused projection output, ``(N, 2r, *spatial)`` / ``(T, 2r)``: ``[A; B]`` along
            channels (the dense adapter; not the interleaved depthwise variant).
        weight_u: ``(O, r)`` (a 1x1 conv weight is viewed so), scale folded in.
        interaction: ``phi`` (one of :data:`~quadra_mm.ops.INTERACTIONS`).
        sample_scale: the range scale ``c`` (:func:`~quadra_mm.ops.functional.range_scale`):
            ``(N, 1, ...)`` per image, or ``(T, 1)`` per row; ``None``: ``c = 1``.
        block_pixels, block_out: tile sizes (powers of two).

    Returns:
        ``y``.
    """
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build_kernel()
    import triton

    weight_u = weight_u.reshape(weight_u.shape[0], -1).contiguous()
    out_channels, rank = weight_u.shape
    if ab.shape[1] != 2 * rank or y.shape[1] != out_channels or y.shape[0] != ab.shape[0]:
        raise ValueError(
            f'fused_quadratic_term_add_: shapes y {tuple(y.shape)}, '
            f'ab {tuple(ab.shape)}, U {tuple(weight_u.shape)} do not fit'
        )
    num_pixels = y[0, 0].numel() if y.dim() > 2 else y.shape[0]
    kind, real_param, degree = interaction_params(interaction)
    grid = (triton.cdiv(num_pixels, block_pixels), y.shape[0] if y.dim() > 2 else 1)
    if sample_scale is None:
        scale, scale_strides = weight_u, (0, 0)  # never read
    else:
        scale = sample_scale.float().contiguous()
        scale_strides = (1, 0) if y.dim() > 2 else (0, 1)
    _KERNEL[grid](
        y,
        ab,
        weight_u,
        scale,
        num_pixels,
        out_channels,
        *_pixel_strides(y),
        *_pixel_strides(ab),
        *scale_strides,
        real_param,
        RANK=rank,
        RANK_PAD=triton.next_power_of_2(rank),
        INTERACTION=kind,
        DEGREE=degree,
        HAS_SCALE=sample_scale is not None,
        BLOCK_P=block_pixels,
        BLOCK_O=block_out,
    )
    return y
