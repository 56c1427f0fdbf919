"""Model surgery for quadratic adapters (pure PyTorch; imports no OpenMMLab package).

Layer math lives in :mod:`quadra_mm.ops`; this package finds the layers to adapt
(patterns and per-backbone presets), swaps them, freezes, saves and loads adapters.
"""

from .adapter_state_dict import adapter_state_dict, load_adapter_state_dict
from .diagnostics import first_nonfinite_layer
from .parameter_report import ParameterReport, parameter_report
from .presets import PRESETS, Preset
from .surgery import (
    inject_quadratic_adapters,
    mark_trainable,
    quadratic_layers,
    replace_module,
    reset_adapters,
)

__all__ = [
    'PRESETS',
    'Preset',
    'inject_quadratic_adapters',
    'quadratic_layers',
    'reset_adapters',
    'mark_trainable',
    'replace_module',
    'adapter_state_dict',
    'load_adapter_state_dict',
    'ParameterReport',
    'parameter_report',
    'first_nonfinite_layer',
]
