"""Interactions ``phi(a, b)`` of the quadratic neuron.

The adapter computes ``U(phi(A(x), B(x)))``; ``phi`` is applied elementwise to the
two rank-``r`` projections. The interactions are stateless callables (no parameters) so
that they can be used unchanged inside the memory-efficient backward's recompute and
in the exported inference modules. Each also states its derivative,
:meth:`Interaction.backward`, which the memory-efficient backward applies
instead of differentiating ``phi`` with autograd.
"""

import inspect
from typing import Dict, Optional, Tuple, Type

import torch
from torch import Tensor

__all__ = [
    'Interaction',
    'QuadraticInteraction',
    'LinearInteraction',
    'RBFInteraction',
    'PolyInteraction',
    'INTERACTIONS',
    'build_interaction',
]


class Interaction:
    """Base class: an elementwise map ``phi(a, b) -> Tensor`` of two equal-shape tensors."""

    name: str = ''
    # Largest |a|, |b| taken as they are; larger projections are scaled down by a power
    # of two (ops.functional.range_scale). None: the interaction cannot overflow where L does.
    range_limit: Optional[float] = None

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def backward(self, a: Tensor, b: Tensor, phi: Tensor, grad: Tensor) -> Tuple[Tensor, Tensor]:
        """``(grad * dphi/da, grad * dphi/db)``, elementwise.

        Args:
            a, b: the inputs of the forward.
            phi: ``self(a, b)``, already computed by the caller (the recompute needs it
                for ``U``'s gradient), so interactions whose derivative contains ``phi`` reuse it.
            grad: gradient of the loss with respect to ``phi``.
        """
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ''

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.extra_repr()})'


class QuadraticInteraction(Interaction):
    """``phi(a, b) = a * b``: with ``U`` on top, each output is the rank-r quadratic form
    ``x^T (sum_i u_i a_i b_i^T) x`` of the input patch."""

    name = 'quadratic'
    # |a * b| <= 2^14: a sum of a few such terms in U stays under fp16's 65504.
    range_limit = 2.0**7

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b

    def backward(self, a: Tensor, b: Tensor, phi: Tensor, grad: Tensor) -> Tuple[Tensor, Tensor]:
        return grad * b, grad * a


class LinearInteraction(Interaction):
    """``phi(a, b) = a + b``: the first-order control. ``U(A(x) + B(x)) = U((A + B)(x))``
    is a LoRA-style low-rank update of ``L`` with exactly the placement and the
    parameter count of the quadratic adapter, so the two compare at equal budget."""

    name = 'linear'

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def backward(self, a: Tensor, b: Tensor, phi: Tensor, grad: Tensor) -> Tuple[Tensor, Tensor]:
        return grad, grad


class RBFInteraction(Interaction):
    """Gaussian (RBF) interaction ``phi(a, b) = exp(-(a - b)^2 / (2 sigma^2))``.

    Args:
        sigma: bandwidth, > 0.
    """

    name = 'rbf'

    def __init__(self, sigma: float = 1.0) -> None:
        if not sigma > 0:
            raise ValueError(f'rbf interaction: sigma must be > 0, got {sigma}')
        self.sigma = float(sigma)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.exp((a - b).square() * (-0.5 / self.sigma**2))

    def backward(self, a: Tensor, b: Tensor, phi: Tensor, grad: Tensor) -> Tuple[Tensor, Tensor]:
        # dphi/da = -(a - b) / sigma^2 * phi = -dphi/db
        grad_a = grad * phi * (a - b) * (-1 / self.sigma**2)
        return grad_a, -grad_a

    def extra_repr(self) -> str:
        return f'sigma={self.sigma}'


class PolyInteraction(Interaction):
    """Polynomial interaction ``phi(a, b) = (a * b + c)^degree``.

    Args:
        degree: positive integer order ``p``.
        c: offset; ``c > 0`` mixes in all lower orders.
    """

    name = 'poly'

    def __init__(self, degree: int = 2, c: float = 1.0) -> None:
        if int(degree) != degree or degree < 1:
            raise ValueError(f'poly interaction: degree must be a positive integer, got {degree}')
        self.degree = int(degree)
        self.c = float(c)
        # (a b + c)^p grows as |a b|^p: keep |a b|^p near 2^14, as the quadratic interaction.
        self.range_limit = 2.0 ** max(1, 7 // self.degree)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return (a * b + self.c).pow(self.degree)

    def backward(self, a: Tensor, b: Tensor, phi: Tensor, grad: Tensor) -> Tuple[Tensor, Tensor]:
        # dphi/da = p (ab + c)^(p-1) b; phi / (ab + c) would divide by zero where ab = -c.
        outer = (
            grad
            if self.degree == 1
            else (grad * (a * b + self.c).pow(self.degree - 1) * self.degree)
        )
        return outer * b, outer * a

    def extra_repr(self) -> str:
        return f'degree={self.degree}, c={self.c}'


INTERACTIONS: Dict[str, Type[Interaction]] = {
    cls.name: cls
    for cls in (QuadraticInteraction, LinearInteraction, RBFInteraction, PolyInteraction)
}


def build_interaction(name: str, **cfg) -> Interaction:
    """Build the interaction registered as ``name`` in :data:`INTERACTIONS`.

    Args:
        name: one of ``INTERACTIONS`` (``'quadratic'``, ``'linear'``, ``'rbf'``, ``'poly'``).
        **cfg: the interaction's options (``sigma`` for rbf; ``degree``, ``c`` for poly).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names) or option
            keys the interaction does not take (the message names them).
    """
    if name not in INTERACTIONS:
        raise ValueError(
            f'unknown interaction {name!r}; valid interactions: {sorted(INTERACTIONS)}'
        )
    cls = INTERACTIONS[name]
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise ValueError(
            f'interaction {name!r} does not take option(s) {unknown}; it takes {sorted(accepted)}'
        )
    return cls(**cfg)
