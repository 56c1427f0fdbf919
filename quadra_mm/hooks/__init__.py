from .stage_hook import QuadraticStageHook, primary_parameters
from .stats_hook import QuadraticStatsHook

__all__ = ['QuadraticStageHook', 'QuadraticStatsHook', 'primary_parameters']
