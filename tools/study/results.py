"""What the study keeps of a run's result in its results.json."""

__all__ = ['summary']

KEPT = ('final', 'test', 'curve', 'seconds', 'step_time', 'trainable', 'adapter_params')


def summary(run: dict) -> dict:
    """The keys of :data:`KEPT` that ``run`` has."""
    return {k: run[k] for k in KEPT if k in run}
