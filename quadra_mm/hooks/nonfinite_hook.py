"""Name the adapted layer behind a non-finite loss."""

import math
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from quadra_mm.adapters import first_nonfinite_layer
from quadra_mm.registry import register_hook


@register_hook
class QuadraticNonFiniteHook(Hook):
    """When a training loss is NaN or infinite, find the first quadratic layer whose
    output went non-finite on that batch, and say so.

    mm users otherwise see only ``loss: nan``. The loss is checked as it reaches the
    optimizer wrapper's ``update_params``, before the backward and the step can spread
    the non-finite value into the weights; while it is finite the hook costs one
    scalar check. On a non-finite loss the batch runs forward once more, without
    gradients and under the wrapper's autocast context, with a check on every
    quadratic layer (:func:`~quadra_mm.adapters.first_nonfinite_layer`).

    Args:
        raise_error (bool): stop training with a ``FloatingPointError`` naming the
            layer (default), or log it as an error and let the step go on (under
            ``AmpOptimWrapper`` the step is then skipped and the loss scale lowered).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, raise_error: bool = True) -> None:
        self.raise_error = raise_error
        self._batch: Optional[dict] = None

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        update_params = wrapper.update_params

        def checked_update_params(loss: torch.Tensor, *args, **kwargs):
            if not math.isfinite(float(loss)):
                self._report(runner, float(loss))
            return update_params(loss, *args, **kwargs)

        wrapper.update_params = checked_update_params

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        self._batch = data_batch

    def _report(self, runner, loss: float) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model

        def forward() -> None:
            with torch.no_grad(), runner.optim_wrapper.optim_context(model):
                model._run_forward(model.data_preprocessor(self._batch, True), mode='loss')

        culprit = first_nonfinite_layer(model, forward)
        where = (
            f'first quadratic layer with a non-finite output: {culprit[0]!r} ({culprit[1]})'
            if culprit
            else 'no quadratic layer made a non-finite output on this batch; '
            'the first non-finite value comes from elsewhere in the model'
        )
        message = f'non-finite training loss ({loss}) at iteration {runner.iter + 1}: {where}'
        if self.raise_error:
            raise FloatingPointError(message)
        runner.logger.error(message)
