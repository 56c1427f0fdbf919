"""Progress of a ninja build from its log, one line for a terminal.

``python tools/build_progress.py LOG START_EPOCH`` prints how far the build
that writes LOG has come (ninja's last ``[n/N]`` line) and the time elapsed
since START_EPOCH. ``tools/bootstrap.sh`` calls it once a minute while mmcv
compiles, so a 20-minute build shows it is moving. Standard library only: it
runs before the venv has anything in it.
"""

import re
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

_NINJA_STEP = re.compile(rb'^\s*\[(\d+)/(\d+)\] ', re.MULTILINE)


def ninja_progress(log: bytes) -> Optional[Tuple[int, int]]:
    """The last ``[done/total]`` step of a ninja log, or None before the first."""
    steps = _NINJA_STEP.findall(log)
    if not steps:
        return None
    done, total = steps[-1]
    return int(done), int(total)


def progress_line(log: bytes, elapsed_s: float) -> str:
    """The line the bootstrap prints: files compiled of the total, elapsed time."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    clock = f'{minutes}:{seconds:02d} elapsed'
    step = ninja_progress(log)
    if step is None:
        return f'mmcv build: configuring, {clock}'
    done, total = step
    return f'mmcv build: {done}/{total} files compiled ({100 * done // total} %), {clock}'


def main(argv: list) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    log_path, start = Path(argv[1]), float(argv[2])
    log = log_path.read_bytes() if log_path.exists() else b''
    print(progress_line(log, time.time() - start), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
