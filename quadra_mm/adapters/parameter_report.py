"""Parameter accounting of an adapted model: all, trainable and adapter
parameters."""

from dataclasses import dataclass

from torch import nn

from ..ops import is_adapter_param_name

__all__ = ['ParameterReport', 'parameter_report']


@dataclass(frozen=True)
class ParameterReport:
    """Parameter counts of a model (shared parameters counted once).

    Attributes:
        total: all parameters.
        trainable: parameters with ``requires_grad``.
        adapter: adapter parameters (``quad_*``), trainable or not.
    """

    total: int
    trainable: int
    adapter: int

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (
            f'trainable params: {self.trainable:,} || all params: {self.total:,} || '
            f'trainable%: {self.trainable_percent:.4f} || adapter params: {self.adapter:,}'
        )


def parameter_report(model: nn.Module) -> ParameterReport:
    """Count ``model``'s parameters (see :class:`ParameterReport`)."""
    total = trainable = adapter = 0
    for name, param in model.named_parameters():
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
        adapter += param.numel() if is_adapter_param_name(name) else 0
    return ParameterReport(total, trainable, adapter)
