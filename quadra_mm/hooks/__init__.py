from .adapter_checkpoint_hook import AdapterCheckpointHook
from .exact_resume_hook import ExactResumeHook
from .frozen_adapters_hook import FrozenAdaptersHook
from .nonfinite_hook import QuadraticNonFiniteHook
from .pruning_hook import AdapterPruningHook
from .stage_hook import QuadraticStageHook, phase_one_frozen_parameters
from .stats_hook import QuadraticStatsHook
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = [
    'AdapterCheckpointHook',
    'AdapterPruningHook',
    'ExactResumeHook',
    'FrozenAdaptersHook',
    'QuadraticNonFiniteHook',
    'QuadraticStageHook',
    'QuadraticStatsHook',
    'WeightsOnlyCheckpointHook',
    'phase_one_frozen_parameters',
]
