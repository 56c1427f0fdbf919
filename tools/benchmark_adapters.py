"""Cost of quadratic adapters against the first-order backbone, written as markdown:
the command line of the package ``tools/benchmarking/`` (its docstring states the
method and lists the modules).

    python tools/benchmark_adapters.py --threads 1 --compile   # CPU, writes docs/benchmarks.md
    python tools/benchmark_adapters.py --device cuda --batch-size 128 --append
    python tools/benchmark_adapters.py --threads 1 --frozen --batch-size 4 --image-size 128
"""

import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

# The names tools/study and tests import from this script.
from benchmarking import (  # noqa: E402,F401
    PRUNED_SETTINGS,
    ZOOS,
    Bench,
    adapter_forward_flops,
    forward_flops,
    pruned_rows,
)
from benchmarking.cli import main  # noqa: E402

if __name__ == '__main__':
    main()
