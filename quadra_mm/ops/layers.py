"""Quadratic neurons: a pretrained layer ``L`` plus a zero-initialised quadratic adapter.

    y = L(x) + s * U(phi(A(x), B(x))),    s = alpha / rank

``L`` is the layer itself (``QuadraticConv2d`` is-a ``nn.Conv2d``, ``QuadraticLinear``
is-a ``nn.Linear``), so its ``weight``/``bias`` stay at the original state-dict keys.
The adapter lives in the submodules ``quad_a``, ``quad_b`` (rank-r projections) and
``quad_u`` (r -> out, zero-initialised, so the layer computes exactly ``L(x)`` at init
while ``U`` still receives non-zero gradients).
"""

import math
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .autograd import Projection, QuadraticTerm, autocast_input
from .functional import (
    adapter_padding,
    fuse_projections,
    pointwise_conv,
    pointwise_conv_backward,
    range_scale,
    split_projections,
    subsampled_geometry,
)
from .interactions import build_interaction
from .triton_kernels import fused_quadratic_term_add_

__all__ = [
    'ADAPTER_PREFIX',
    'is_adapter_param_name',
    'interaction_options',
    'QuadraticNeuron',
    'QuadraticConvNeuron',
    'QuadraticConv2d',
    'QuadraticLinear',
    'layer_config',
    'share_parameters',
]

ADAPTER_PREFIX = 'quad_'
_IntPair = Union[int, Tuple[int, int]]


def is_adapter_param_name(name: str) -> bool:
    """Whether a parameter/state-dict name belongs to an adapter: one of its dotted
    components starts with :data:`ADAPTER_PREFIX` (``...depthwise_conv.quad_a.weight``)."""
    return any(part.startswith(ADAPTER_PREFIX) for part in name.split('.'))


def layer_config(layer: Union[nn.Conv2d, nn.Linear]) -> Dict[str, Any]:
    """Constructor arguments of ``nn.Conv2d`` / ``nn.Linear`` that rebuild ``layer``'s
    geometry (without device, dtype or values)."""
    if isinstance(layer, nn.Conv2d):
        return dict(
            in_channels=layer.in_channels,
            out_channels=layer.out_channels,
            kernel_size=layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
        )
    return dict(
        in_features=layer.in_features, out_features=layer.out_features, bias=layer.bias is not None
    )


def share_parameters(dst: nn.Module, src: nn.Module) -> nn.Module:
    """Make ``dst`` use ``src``'s own Parameter objects (``weight``, ``bias``; not
    those of its submodules), no copy."""
    for name, param in src._parameters.items():
        setattr(dst, name, param)
    return dst


def interaction_options(
    interaction: Optional[str],
    interaction_cfg: Optional[dict],
    kernel: Optional[str] = None,
    kernel_cfg: Optional[dict] = None,
    name: Optional[str] = None,
) -> Tuple[str, Optional[dict]]:
    """``(interaction, interaction_cfg)`` from a constructor's arguments: ``kernel`` and
    ``kernel_cfg`` are their old names, still accepted (configs write
    ``adapter=dict(kernel='quadratic')``); the interaction is ``'quadratic'`` by default.

    Raises:
        ValueError: an argument given under both names (the message names ``name``).
    """
    for new, old, new_key, old_key in (
        (interaction, kernel, 'interaction', 'kernel'),
        (interaction_cfg, kernel_cfg, 'interaction_cfg', 'kernel_cfg'),
    ):
        if new is not None and old is not None:
            raise ValueError(
                f'{name or "layer"}: `{old_key}` is the old name of `{new_key}`; give one of them'
            )
    return interaction or kernel or 'quadratic', (
        kernel_cfg if interaction_cfg is None else interaction_cfg
    )


def _check_rank(rank: int, name: Optional[str]) -> None:
    if rank <= 0:
        raise ValueError(f'{name or "layer"}: adapter rank must be > 0, got {rank}')


class QuadraticNeuron(nn.Module):
    """Common base of the quadratic layers (use it for ``isinstance`` checks).

    Subclasses are also ``nn.Conv2d`` / ``nn.Linear``; they provide ``_primary(x)``
    (``L(x)``), ``_project(x, w_ab)`` (the fused ``A``/``B`` projection),
    ``_u_output(h, w_u_scaled, c, out)`` (``c * s U(h)``) and ``_quadratic_term_backward`` (the
    quadratic term's gradients by explicit formulas, for
    :class:`~quadra_mm.ops.autograd.QuadraticTerm`). The quadratic term is composed from
    them in ``_fused_quadratic_term(x, w_ab, w_u_scaled)``, from the fused ``A``/``B`` weight
    and the scaled ``U``: the one forward formula of training and inference.

    Backward (``memory_efficient``): ``None`` (default) chooses at every forward, from
    what ``L`` does: while ``L``'s weight trains, the analytic backward recomputes
    ``A(x)``, ``B(x)`` (``L``'s own weight gradient dominates that backward, and the
    projections are not kept); while it is frozen (phase 1 of stage training,
    adapters-only fine-tuning), the forward's projections are kept (``2r`` channels)
    and nothing is recomputed. ``True`` always recomputes, ``False`` runs plain
    autograd through the quadratic term.

    Inference form (as PEFT's ``merge()``): :meth:`fuse` stores the fused ``A``/``B``
    weight and ``s * U`` once, as non-persistent buffers (the state dict keeps the
    training keys), and ``forward`` then runs the quadratic term from them, on CUDA as one
    Triton kernel; a layer whose ``U`` is zero skips its quadratic term. :meth:`unfuse` goes
    back to the training form. A fused layer recomputes its buffers whenever a state
    dict is loaded into it.

    Attributes:
        rank: width of the interaction (``r``; ``in_channels`` for the depthwise variant).
        scale: ``s``, multiplies the adapter output.
        interaction_name: name of the interaction ``phi``.
        memory_efficient: ``None``: choose the backward by whether ``L``'s weight trains;
            ``True``: recompute the projections in backward; ``False``: plain autograd.
        depthwise: depthwise variant (conv only).
        stage: 0-based backbone stage, set by the surgery; ``None`` if unknown.
        record_stats: when True, ``forward`` stores ``last_stats``.
        last_stats: ``(quadratic_norm, primary_norm)``, L2 norms of ``s * U(...)`` and of
            ``L(x)`` from the last forward with ``record_stats`` on (detached 0-dim fp32).
        fused: whether the layer is in its inference form (:meth:`fuse`).
    """

    quad_a: nn.Module
    quad_b: nn.Module
    quad_u: nn.Module
    # The channel dimension of the projections (also the first one a range scale
    # reduces over).
    _channel_dim: int
    # Whether forward adds the quadratic term into L's output inside its autograd Function
    # (see forward).
    _adds_into_output = True

    def _init_adapter(
        self,
        a: nn.Module,
        b: nn.Module,
        u: nn.Module,
        *,
        rank: int,
        scale: float,
        interaction: Optional[str],
        interaction_cfg: Optional[dict],
        memory_efficient: Optional[bool],
        depthwise: bool,
        name: Optional[str],
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
    ) -> None:
        try:
            interaction, interaction_cfg = interaction_options(
                interaction, interaction_cfg, kernel, kernel_cfg, name
            )
            self.interaction = build_interaction(interaction, **(interaction_cfg or {}))
        except ValueError as err:
            raise ValueError(f'{name or "layer"}: {err}') from None
        self.quad_a, self.quad_b, self.quad_u = a, b, u
        self.rank = rank
        self.scale = scale
        self.interaction_name = interaction
        self.memory_efficient = memory_efficient
        self.depthwise = depthwise
        self.stage: Optional[int] = None
        self.record_stats = False
        self.last_stats: Optional[Tuple[Tensor, Tensor]] = None
        self.fused = False
        self.quadratic_term_is_zero = False
        self.register_buffer('fused_ab_weight', None, persistent=False)
        self.register_buffer('fused_u_weight', None, persistent=False)
        self.register_load_state_dict_post_hook(_fuse_again_after_load)
        self.reset_adapter()

    def adopt_primary(self, original: nn.Module) -> None:
        """Finish a layer built on the meta device from ``original``: share its primary
        Parameters and allocate and initialise the adapter on their device."""
        for module in (self.quad_a, self.quad_b, self.quad_u):
            module.to_empty(device=original.weight.device)
        self.reset_adapter()
        share_parameters(self, original)
        self.train(original.training)

    def reset_adapter(self) -> None:
        """Initialise ``A`` and ``B`` like LoRA's ``A`` (kaiming-uniform, a=sqrt(5)) and
        ``U`` to zero, so the layer computes exactly ``L(x)`` again."""
        for module in (self.quad_a, self.quad_b):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        nn.init.zeros_(self.quad_u.weight)

    def adapter_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of ``A``, ``B`` and ``U`` (not the primary weight/bias)."""
        for module in (self.quad_a, self.quad_b, self.quad_u):
            yield from module.parameters()

    def primary_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of ``L``: its weight and bias, and those of any submodule of its
        own (a deformable conv's offset conv)."""
        for name, param in self.named_parameters():
            if not is_adapter_param_name(name):
                yield param

    @torch.no_grad()
    def fuse(self) -> 'QuadraticNeuron':
        """Switch to the inference form: the fused ``A``/``B`` weight and ``s * U`` are
        computed now from the current weights (again on every state-dict load), and a
        ``U`` that is exactly zero drops the quadratic term. Gradients no longer reach the
        adapter. Returns ``self``."""
        self.fused = True
        self.fused_ab_weight = (
            fuse_projections(self.quad_a.weight, self.quad_b.weight, self.depthwise)
            .detach()
            .clone()
        )
        self.fused_u_weight = self._scaled(self.quad_u.weight).detach().clone()
        self.quadratic_term_is_zero = not bool(self.quad_u.weight.any())
        return self

    def unfuse(self) -> 'QuadraticNeuron':
        """Back to the training form (the adapter weights were never changed). Returns ``self``."""
        self.fused = False
        self.quadratic_term_is_zero = False
        self.fused_ab_weight = self.fused_u_weight = None
        return self

    def _primary(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _fused_quadratic_term(
        self, x: Tensor, w_ab: Tensor, w_u_scaled: Tensor, out: Optional[Tensor] = None
    ) -> Tuple[Tensor, Projection]:
        """``(s * U(phi(A(x), B(x))), (AB(x) / c, c))`` from the fused ``A``/``B``
        weight and ``s * U``; the quadratic term is added into ``out`` in place when given. The
        second item is the range-scaled projection that the analytic backward can keep
        (see :meth:`_projection`)."""
        ab, scale = self._projection(x, w_ab)
        return self._u_output(self._interact(ab)[2], w_u_scaled, scale, out), (ab, scale)

    def _quadratic_term_with_projection(
        self, x: Tensor, w_a: Tensor, w_b: Tensor, w_u: Tensor, out: Optional[Tensor] = None
    ) -> Tuple[Tensor, Projection]:
        return self._fused_quadratic_term(
            x, fuse_projections(w_a, w_b, self.depthwise), self._scaled(w_u), out
        )

    def _u_output(
        self, h: Tensor, w_u_scaled: Tensor, scale: Optional[Tensor], out: Optional[Tensor]
    ) -> Tensor:
        """``c * s U(h)`` (``c = 1`` for ``scale=None``), added into ``out`` in place when
        given."""
        raise NotImplementedError

    def _triton_applies(self, primary: Tensor) -> bool:
        # The kernel reads [A; B] halves (not the interleaved depthwise layout) and has
        # no backward; the compiler fuses the eager ops itself.
        return (
            primary.is_cuda
            and not self.depthwise
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
        )

    def _fused_forward(self, x: Tensor) -> Tensor:
        primary = self._primary(x)
        if self.quadratic_term_is_zero:
            return primary
        if torch.jit.is_tracing():  # mmengine's FLOP count has no handle for baddbmm_
            return primary.add_(
                self._fused_quadratic_term(x, self.fused_ab_weight, self.fused_u_weight)[0]
            )
        if not self._triton_applies(primary):
            return self._fused_quadratic_term(
                x, self.fused_ab_weight, self.fused_u_weight, out=primary
            )[0]
        ab = self._project(x, self.fused_ab_weight)
        if isinstance(self, nn.Linear):  # tokens as rows, one range scale each
            rows = ab.reshape(-1, ab.shape[-1])
            fused_quadratic_term_add_(
                primary.view(-1, primary.shape[-1]),
                rows,
                self.fused_u_weight,
                self.interaction,
                range_scale(rows, self.interaction.range_limit, -1),
            )
        else:
            fused_quadratic_term_add_(
                primary,
                ab,
                self.fused_u_weight,
                self.interaction,
                range_scale(ab, self.interaction.range_limit, 1),
            )
        return primary

    def _project(self, x: Tensor, w_ab: Tensor) -> Tensor:
        """The fused ``A``/``B`` projection ``AB(x)`` (``2r`` channels)."""
        raise NotImplementedError

    def _projection(self, x: Tensor, w_ab: Tensor) -> Projection:
        """``(AB(x) / c, c)``: the fused projection divided by its range scale ``c`` of
        :func:`~quadra_mm.ops.functional.range_scale` (``None`` for kernels without a
        range limit); the quadratic term is ``c * U(phi(a / c, b / c))``."""
        ab = self._project(x, w_ab)
        scale = range_scale(ab, self.interaction.range_limit, self._channel_dim)
        if scale is not None:
            # ab is a fresh projection that nothing else reads: divide it in place.
            ab = ab.div_(scale.to(ab.dtype))
        return ab, scale

    def _interact(self, ab: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``(a, b, phi(a, b))`` from the (range-scaled) fused projection ``ab``."""
        a, b = split_projections(ab, self._channel_dim, self.depthwise)
        return a, b, self.interaction(a, b)

    def _keeps_projection(self) -> bool:
        """Whether the analytic backward keeps the forward's projections instead of
        recomputing them: never with ``memory_efficient=True``; with ``None``, while
        ``L``'s weight is frozen (a Python bool on ``requires_grad``: dynamo guards on it,
        no graph break). ``memory_efficient=False`` takes plain autograd, not this path."""
        # A frozen L's backward is only its input gradient, so the recompute (one more
        # A/B conv) is a large share of the step: keeping the projections took 0.04 off
        # ResNet-50's frozen CPU step ratio (docs/benchmarks.md). A training L's weight
        # gradient dominates its backward; there the recompute's memory saving wins.
        if self.memory_efficient is None:
            return not self.weight.requires_grad
        return False

    def _quadratic_term_backward(
        self,
        grad: Tensor,
        x: Tensor,
        w_a: Tensor,
        w_b: Tensor,
        w_u: Tensor,
        needs_grad: Tuple[bool, ...],
        projection: Optional[Projection] = None,
    ) -> Tuple[Optional[Tensor], ...]:
        raise NotImplementedError

    def _adapter_input(self, x: Tensor) -> Tensor:
        return x

    def _scaled(self, w_u: Tensor) -> Tensor:
        # s = 1 is the default (alpha = rank); skipping the multiply saves kernel
        # launches, which dominate the adapter's cost in fast GPU steps.
        return w_u if self.scale == 1 else w_u * self.scale

    def _scaled_grad(self, grad_scaled: Optional[Tensor], w_u: Tensor) -> Optional[Tensor]:
        """Gradient with respect to ``w_u`` from the one with respect to ``s * w_u``."""
        if grad_scaled is None:
            return None
        return self._scaled(grad_scaled.to(w_u.dtype))

    def _quadratic_term(self, x: Tensor, out: Optional[Tensor] = None) -> Tensor:
        x = self._adapter_input(autocast_input(x))
        weights = (self.quad_a.weight, self.quad_b.weight, self.quad_u.weight)
        # A tracer (mmengine's FLOP count, ONNX) sees an autograd Function as one
        # opaque op: trace the quadratic term's own convs instead.
        if (
            self.memory_efficient is not False
            and torch.is_grad_enabled()
            and not torch.jit.is_tracing()
        ):
            return QuadraticTerm.apply(self, out, x, *weights, not self._keeps_projection())
        return self._quadratic_term_with_projection(x, *weights, out)[0]

    def quadratic_term(self, x: Tensor) -> Tensor:
        """The scaled adapter output ``s * U(phi(A(x), B(x)))``."""
        return self._quadratic_term(x)

    def forward(self, x: Tensor) -> Tensor:
        # One autocast cast of x shared by L and the quadratic term: both save that one tensor.
        x = autocast_input(x)
        if self.fused:
            return self._fused_forward(x)
        primary = self._primary(x)
        # The quadratic term goes into L's output in place (L's backward does not save its output;
        # a separate quadratic-term tensor costs an allocation and a full pass), except when its
        # norm is recorded or a tracer counts ops (mmengine has no handle for baddbmm_).
        if self._adds_into_output and not (self.record_stats or torch.jit.is_tracing()):
            return self._quadratic_term(x, out=primary)
        term = self.quadratic_term(x)
        if self.record_stats:
            self.last_stats = (
                torch.linalg.vector_norm(term.detach(), dtype=torch.float32),
                torch.linalg.vector_norm(primary.detach(), dtype=torch.float32),
            )
        return primary.add_(term)

    def _adapter_repr(self) -> str:
        return (
            f'rank={self.rank}, scale={self.scale:g}, interaction={self.interaction!r}, '
            f'depthwise={self.depthwise}, memory_efficient={self.memory_efficient}'
            + (', fused' if self.fused else '')
        )


def _fuse_again_after_load(layer: QuadraticNeuron, incompatible_keys) -> None:
    # The fused buffers are derived from the adapter weights just loaded.
    if layer.fused:
        layer.fuse()


class QuadraticConvNeuron(QuadraticNeuron):
    """Base of the quadratic layers whose ``L`` is a 2-d convolution: an ``nn.Conv2d``,
    or any layer with a conv's output geometry (mmcv's deformable convs, see
    :mod:`quadra_mm.models.deform_conv`).

    The quadratic term is the low-rank atrous conv adapter. Dense (default): ``A``, ``B`` are
    ``Conv2d(in, r, k, stride=L.stride, dilation=d, bias=False)``, ``U`` is
    ``Conv2d(r, out, 1, bias=False)``, ``s = alpha / r`` with ``alpha = r`` by default.
    Depthwise (``depthwise=True``): ``A``, ``B`` are depthwise ``k x k`` convs
    ``in -> in``, ``phi`` acts per channel, ``U`` is ``Conv2d(in, out, 1, groups=in)``
    (needs ``out % in == 0``), ``s = alpha`` with ``alpha = 1`` by default. The padding
    of ``A``/``B`` gives them ``L``'s output shape for every input size (see
    :func:`~quadra_mm.ops.functional.adapter_padding`); ``A`` also carries ``L``'s
    padding mode. A subclass reads ``L``'s geometry from its ``kernel_size``,
    ``stride``, ``padding`` and ``dilation`` attributes (pairs, or a padding string)
    and provides ``_primary``.
    """

    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Union[str, Tuple[int, int]]
    dilation: Tuple[int, int]
    # NCHW: one range scale per image.
    _channel_dim = 1

    def _init_conv_adapter(
        self,
        in_channels: int,
        out_channels: int,
        *,
        rank: int,
        adapter_kernel_size: _IntPair,
        adapter_dilation: _IntPair,
        interaction: Optional[str],
        interaction_cfg: Optional[dict],
        alpha: Optional[float],
        depthwise: bool,
        memory_efficient: Optional[bool],
        name: Optional[str],
        padding_mode: str = 'zeros',
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
    ) -> None:
        """Build ``A``, ``B`` and ``U`` for ``L``'s geometry (arguments as
        :class:`QuadraticConv2d`'s; ``padding_mode`` is ``L``'s)."""
        if depthwise:
            if out_channels % in_channels:
                raise ValueError(
                    f'{name or "layer"}: the depthwise adapter needs '
                    f'out_channels ({out_channels}) to be a multiple of '
                    f'in_channels ({in_channels})'
                )
            width, scale = in_channels, 1.0 if alpha is None else alpha
        else:
            _check_rank(rank, name)
            width, scale = rank, (rank if alpha is None else alpha) / rank
        ab_groups = in_channels if depthwise else 1
        ab_padding = adapter_padding(
            _pair(adapter_kernel_size),
            _pair(adapter_dilation),
            self.kernel_size,
            self.dilation,
            self.padding,
            name,
        )
        factory = dict(device=device, dtype=dtype)
        a, b = (
            nn.Conv2d(
                in_channels,
                width,
                adapter_kernel_size,
                self.stride,
                ab_padding,
                adapter_dilation,
                ab_groups,
                False,
                padding_mode,
                **factory,
            )
            for _ in range(2)
        )
        u = nn.Conv2d(width, out_channels, 1, groups=ab_groups, bias=False, **factory)
        self._init_adapter(
            a,
            b,
            u,
            rank=width,
            scale=scale,
            interaction=interaction,
            interaction_cfg=interaction_cfg,
            memory_efficient=memory_efficient,
            depthwise=depthwise,
            name=name,
            kernel=kernel,
            kernel_cfg=kernel_cfg,
        )

    def _adapter_input(self, x: Tensor) -> Tensor:
        # A non-zero padding mode pads outside the quadratic term (autograd differentiates the
        # pad); the quadratic term then convolves with padding 0. Only then is a padded copy saved.
        if self.quad_a.padding_mode == 'zeros':
            return x
        return F.pad(x, self.quad_a._reversed_padding_repeated_twice, mode=self.quad_a.padding_mode)

    def _ab_geometry(
        self,
    ) -> Tuple[Tuple[int, int], Tuple[int, ...], Tuple[int, ...], Tuple[int, ...], int]:
        """``(step, stride, padding, dilation, groups)`` of the fused ``A``/``B`` conv, which
        reads only ``x[..., ::step[0], ::step[1]]`` (see
        :func:`~quadra_mm.ops.functional.subsampled_geometry`)."""
        a = self.quad_a
        padding = a.padding if a.padding_mode == 'zeros' else (0, 0)
        return (*subsampled_geometry(a.stride, padding, a.dilation), a.groups)

    @staticmethod
    def _subsample(x: Tensor, step: Tuple[int, int]) -> Tensor:
        # No slice when nothing is skipped: a traced FLOP count would list it as an op.
        return x if step == (1, 1) else x[..., :: step[0], :: step[1]]

    def _project(self, x: Tensor, w_ab: Tensor) -> Tensor:
        step, *geometry = self._ab_geometry()
        return F.conv2d(self._subsample(x, step), w_ab, None, *geometry)

    def _u_output(
        self, h: Tensor, w_u_scaled: Tensor, scale: Optional[Tensor], out: Optional[Tensor]
    ) -> Tensor:
        return pointwise_conv(h, w_u_scaled, self.quad_u.groups, out, scale)

    def _quadratic_term_backward(
        self,
        grad: Tensor,
        x: Tensor,
        w_a: Tensor,
        w_b: Tensor,
        w_u: Tensor,
        needs_grad: Tuple[bool, ...],
        projection: Optional[Projection] = None,
    ) -> Tuple[Optional[Tensor], ...]:
        need_x, need_a, need_b, need_u = needs_grad
        need_ab = need_a or need_b
        w_ab = fuse_projections(w_a, w_b, self.depthwise)
        ab, scale = self._projection(x, w_ab) if projection is None else projection
        a, b, h = self._interact(ab)
        # grad_ch is the gradient with respect to c * h; the c cancels against a / c and b / c.
        grad_ch, grad_u = pointwise_conv_backward(
            grad, h, self._scaled(w_u), self.quad_u.groups, (need_x or need_ab, need_u), scale
        )
        grad_x = grad_a = grad_b = None
        if need_x or need_ab:
            grad_ab = fuse_projections(
                *self.interaction.backward(a, b, h, grad_ch), self.depthwise, dim=1
            )
            # input and weight gradients of the fused A/B conv in one call;
            # convolution_backward is not an autocast op, so cast like the forward's conv.
            step, stride, padding, dilation, groups = self._ab_geometry()
            grad_x, grad_w_ab, _ = torch.ops.aten.convolution_backward(
                autocast_input(grad_ab),
                self._subsample(x, step),
                autocast_input(w_ab),
                None,
                stride,
                padding,
                dilation,
                False,
                [0, 0],
                groups,
                [need_x, need_ab, False],
            )
            if need_x and step != (1, 1):
                # The rows and columns of x that the conv skips get no gradient.
                full = torch.zeros_like(x)
                full[..., :: step[0], :: step[1]] = grad_x
                grad_x = full
            if need_ab:
                grad_a, grad_b = split_projections(grad_w_ab.to(w_a.dtype), 0, self.depthwise)
        return grad_x, grad_a, grad_b, self._scaled_grad(grad_u, w_u)


class QuadraticConv2d(nn.Conv2d, QuadraticConvNeuron):
    """``nn.Conv2d`` ``L`` plus a low-rank atrous quadratic adapter (the dense and
    depthwise variants of :class:`QuadraticConvNeuron`).

    Args:
        in_channels, ..., dtype: as ``nn.Conv2d``; they describe ``L``.
        rank: ``r`` (dense variant), > 0.
        adapter_kernel_size: ``k`` of ``A`` and ``B``.
        adapter_dilation: ``d`` of ``A`` and ``B`` (atrous).
        interaction: name of the interaction ``phi``
            (:data:`~quadra_mm.ops.interactions.INTERACTIONS`); ``'quadratic'`` by default.
        interaction_cfg: options of the interaction.
        alpha: numerator of the scale (see :class:`QuadraticConvNeuron`).
        depthwise: use the depthwise variant.
        memory_efficient: ``None`` (default): the backward by whether ``L`` trains (see
            :class:`QuadraticNeuron`); ``True``: always recompute ``A(x)``, ``B(x)`` in
            backward; ``False``: plain autograd.
        name: layer name used in error messages.
        kernel, kernel_cfg: old names of ``interaction`` and ``interaction_cfg``.

    Raises:
        ValueError: rank <= 0, an adapter geometry that cannot keep the output shape,
            ``out % in != 0`` in depthwise mode, a bad interaction, or an interaction
            argument given under both its names.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntPair,
        stride: _IntPair = 1,
        padding: Union[str, _IntPair] = 0,
        dilation: _IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = 'zeros',
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        rank: int = 8,
        adapter_kernel_size: _IntPair = 3,
        adapter_dilation: _IntPair = 2,
        interaction: Optional[str] = None,
        interaction_cfg: Optional[dict] = None,
        alpha: Optional[float] = None,
        depthwise: bool = False,
        memory_efficient: Optional[bool] = None,
        name: Optional[str] = None,
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )
        self._init_conv_adapter(
            in_channels,
            out_channels,
            rank=rank,
            adapter_kernel_size=adapter_kernel_size,
            adapter_dilation=adapter_dilation,
            interaction=interaction,
            interaction_cfg=interaction_cfg,
            alpha=alpha,
            depthwise=depthwise,
            memory_efficient=memory_efficient,
            name=name,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
            kernel=kernel,
            kernel_cfg=kernel_cfg,
        )

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        rank: int = 8,
        kernel_size: _IntPair = 3,
        dilation: _IntPair = 2,
        interaction: Optional[str] = None,
        interaction_cfg: Optional[dict] = None,
        alpha: Optional[float] = None,
        depthwise: bool = False,
        memory_efficient: Optional[bool] = None,
        name: Optional[str] = None,
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
    ) -> 'QuadraticConv2d':
        """Wrap an existing ``nn.Conv2d``, sharing (not copying) its weight and bias.

        The adapter gets the conv's device and dtype; ``kernel_size`` and ``dilation``
        are the adapter's ``k`` and ``d``. Other arguments as in the constructor.
        """
        layer = cls(
            **layer_config(conv),
            device='meta',
            dtype=conv.weight.dtype,
            rank=rank,
            adapter_kernel_size=kernel_size,
            adapter_dilation=dilation,
            interaction=interaction,
            interaction_cfg=interaction_cfg,
            alpha=alpha,
            depthwise=depthwise,
            memory_efficient=memory_efficient,
            name=name,
            kernel=kernel,
            kernel_cfg=kernel_cfg,
        )
        layer.adopt_primary(conv)
        return layer

    forward = QuadraticNeuron.forward

    def _primary(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, {self._adapter_repr()}'


class QuadraticLinear(nn.Linear, QuadraticNeuron):
    """``nn.Linear`` ``L`` plus a low-rank quadratic adapter.

    ``A``, ``B`` are ``Linear(in, r, bias=False)``, ``U`` is ``Linear(r, out,
    bias=False)``, ``s = alpha / r`` (``alpha = r`` by default).

    Args:
        in_features, out_features, bias, device, dtype: as ``nn.Linear``; they describe ``L``.
        rank, interaction, interaction_cfg, alpha, memory_efficient, name, kernel, kernel_cfg:
            as :class:`QuadraticConv2d`.

    Raises:
        ValueError: rank <= 0, a bad interaction, or an interaction argument given under
            both its names.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        rank: int = 8,
        interaction: Optional[str] = None,
        interaction_cfg: Optional[dict] = None,
        alpha: Optional[float] = None,
        memory_efficient: Optional[bool] = None,
        name: Optional[str] = None,
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        _check_rank(rank, name)
        factory = dict(device=device, dtype=dtype)
        a, b = (nn.Linear(in_features, rank, bias=False, **factory) for _ in range(2))
        u = nn.Linear(rank, out_features, bias=False, **factory)
        self._init_adapter(
            a,
            b,
            u,
            rank=rank,
            scale=(rank if alpha is None else alpha) / rank,
            interaction=interaction,
            interaction_cfg=interaction_cfg,
            memory_efficient=memory_efficient,
            depthwise=False,
            name=name,
            kernel=kernel,
            kernel_cfg=kernel_cfg,
        )

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        rank: int = 8,
        interaction: Optional[str] = None,
        interaction_cfg: Optional[dict] = None,
        alpha: Optional[float] = None,
        memory_efficient: Optional[bool] = None,
        name: Optional[str] = None,
        kernel: Optional[str] = None,
        kernel_cfg: Optional[dict] = None,
    ) -> 'QuadraticLinear':
        """Wrap an existing ``nn.Linear``, sharing (not copying) its weight and bias; the
        adapter gets its device and dtype."""
        layer = cls(
            **layer_config(linear),
            device='meta',
            dtype=linear.weight.dtype,
            rank=rank,
            interaction=interaction,
            interaction_cfg=interaction_cfg,
            alpha=alpha,
            memory_efficient=memory_efficient,
            name=name,
            kernel=kernel,
            kernel_cfg=kernel_cfg,
        )
        layer.adopt_primary(linear)
        return layer

    forward = QuadraticNeuron.forward
    # Tokens as rows: one range scale per token.
    _channel_dim = -1
    # AOTAutograd (torch 2.14) fails to trace the memory-efficient Function returning a
    # dirty 3-d input (tokens); a linear's U is one GEMM either way.
    _adds_into_output = False

    def _primary(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def _project(self, x: Tensor, w_ab: Tensor) -> Tensor:
        return F.linear(x, w_ab)

    def _u_output(
        self, h: Tensor, w_u_scaled: Tensor, scale: Optional[Tensor], out: Optional[Tensor]
    ) -> Tensor:
        term = F.linear(h, w_u_scaled)
        if scale is None:
            return term if out is None else out.add_(term)
        if out is None:
            return term.mul_(scale.to(term.dtype))
        return out.addcmul_(term, scale.to(out.dtype))

    def _quadratic_term_backward(
        self,
        grad: Tensor,
        x: Tensor,
        w_a: Tensor,
        w_b: Tensor,
        w_u: Tensor,
        needs_grad: Tuple[bool, ...],
        projection: Optional[Projection] = None,
    ) -> Tuple[Optional[Tensor], ...]:
        # With rows X (tokens x in): AB = X W_ab^T, Y = c phi(A / c, B / c) (s W_u)^T (c per
        # row), so dW_u = s dY^T (c phi), d(c phi) = dY (s W_u), dAB = phi'(A / c, B / c) d(c phi)
        # (the c cancels), dX = dAB W_ab, dW_ab = dAB^T X.
        need_x, need_a, need_b, need_u = needs_grad
        need_ab = need_a or need_b
        w_ab = fuse_projections(w_a, w_b, False)
        ab, scale = self._projection(x, w_ab) if projection is None else projection
        a, b, h = self._interact(ab)
        grad_rows = grad.flatten(0, -2)
        grad_u = None
        if need_u:
            if scale is None:
                grad_u = torch.matmul(grad_rows.t(), h.flatten(0, -2))
            else:
                # c / max(c) <= 1 scales the rows exactly and without overflow; max(c) in fp32.
                scale_rows, peak = scale.flatten(0, -2), scale.amax()
                grad_u = torch.matmul(
                    grad_rows.t(), h.flatten(0, -2) * (scale_rows / peak).to(h.dtype)
                )
                grad_u = grad_u.float() * peak
        grad_x = grad_a = grad_b = None
        if need_x or need_ab:
            grad_ch = torch.matmul(grad, self._scaled(w_u))
            grad_ab = fuse_projections(*self.interaction.backward(a, b, h, grad_ch), False, dim=-1)
            if need_x:
                grad_x = torch.matmul(grad_ab, w_ab)
            if need_ab:
                grad_w_ab = torch.matmul(grad_ab.flatten(0, -2).t(), x.flatten(0, -2))
                grad_a, grad_b = split_projections(grad_w_ab.to(w_a.dtype), 0, False)
        return grad_x, grad_a, grad_b, self._scaled_grad(grad_u, w_u)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, {self._adapter_repr()}'
