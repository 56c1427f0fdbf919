"""Quadratic adapters kept at their initial value for a whole run."""

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from quadra_mm.ops import is_adapter_param_name
from quadra_mm.registry import register_hook


@register_hook
class FrozenAdaptersHook(Hook):
    """Freeze every quadratic adapter (``A``, ``B``, ``U``) before training:
    ``requires_grad=False``, so the optimizer skips them (no update, no weight
    decay) and ``U`` stays at its zero init: the adapted model computes the
    first-order function throughout, while everything else trains as the
    config says. The control arm ``norms-head`` of
    ``tools/analysis_tools/compare_adaptation.py``: does any adapter add
    anything? (An lr multiplier of 0 does not freeze: a scheduler's
    ``eta_min`` still gives those parameters a learning rate.)

    Under DistributedDataParallel the frozen adapters have no gradients:
    the config must set ``find_unused_parameters = True``.
    """

    priority = 'HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        frozen = 0
        for name, param in model.named_parameters():
            if is_adapter_param_name(name):
                param.requires_grad_(False)
                param.grad = None
                frozen += 1
        if not frozen:
            raise ValueError(
                'FrozenAdaptersHook: the model has no quadratic adapter '
                'parameters; use a QuadraNetV2 backbone'
            )
        runner.logger.info(f'FrozenAdaptersHook: {frozen} adapter parameters frozen')
