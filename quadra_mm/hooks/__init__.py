from .adapter_checkpoint_hook import AdapterCheckpointHook
from .exact_resume_hook import ExactResumeHook
from .stage_hook import QuadraticStageHook, primary_parameters
from .stats_hook import QuadraticStatsHook
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = [
    'AdapterCheckpointHook', 'ExactResumeHook', 'QuadraticStageHook',
    'QuadraticStatsHook', 'WeightsOnlyCheckpointHook', 'primary_parameters'
]
