"""Does quadratic adaptation help on *your* data? A comparison of adaptation
recipes (arms) derived from one mmdet / mmpretrain config with a
``QuadraNetV2`` backbone, each run through mmengine's ``Runner`` in its own
process (``tools/analysis_tools/compare_adaptation.py`` is the command line).

One module per idea:

- :mod:`.arms`: the built-in arms and user arms, edits of a loaded config;
- :mod:`.checks`: what is refused before anything trains;
- :mod:`.cache`: the run cache keyed by config fingerprint, atomic writes;
- :mod:`.worker`: one run (train, test once, parameters, FLOPs) in a process;
- :mod:`.executor`: starting runs (none / pytorch / slurm launchers), the
  pool and the progress bar;
- :mod:`.protocol`: lr sweep on val, seeds, the results;
- :mod:`.statistics`: mean ± std, the paired difference, the verdict rule;
- :mod:`.report`: ``report.md``, ``results.json`` and the plot.
"""

from .arms import BUILTIN_ARMS, DEFAULT_ARMS, Arm, ArmError, parse_arm, parse_arms
from .checks import ComparisonError
from .executor import Launch, RunFailed
from .protocol import Comparison, prepare, run_comparison
from .report import render_report, write_outputs
from .statistics import VERDICT_RULE, fmt, mean_std, paired_difference, verdict

__all__ = [
    'BUILTIN_ARMS',
    'DEFAULT_ARMS',
    'Arm',
    'ArmError',
    'parse_arm',
    'parse_arms',
    'ComparisonError',
    'Launch',
    'RunFailed',
    'Comparison',
    'prepare',
    'run_comparison',
    'render_report',
    'write_outputs',
    'VERDICT_RULE',
    'fmt',
    'mean_std',
    'paired_difference',
    'verdict',
]
