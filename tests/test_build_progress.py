"""The bootstrap's mmcv build progress line, fed a recorded build log."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(ROOT / 'tools'))
from build_progress import ninja_progress, progress_line  # noqa: E402

# The head of a real `pip -v wheel` log of mmcv 2.1.0 (pip indents the build's output).
RECORDED = (ROOT / 'tests' / 'data' / 'mmcv-build-head.log').read_bytes()


def test_progress_of_a_recorded_log():
    assert ninja_progress(RECORDED) == (9, 77)
    assert progress_line(RECORDED, 125) == 'mmcv build: 9/77 files compiled (11 %), 2:05 elapsed'


def test_progress_before_the_first_file_and_at_the_end():
    head = RECORDED.split(b'[1/77]')[0]
    assert ninja_progress(head) is None
    assert progress_line(head, 59) == 'mmcv build: configuring, 0:59 elapsed'
    done = RECORDED + b'  [77/77] c++ -MMD ... pybind.o\n'
    assert progress_line(done, 545).startswith('mmcv build: 77/77 files compiled (100 %)')


def test_progress_command_line(tmp_path):
    log = tmp_path / 'build.log'
    log.write_bytes(RECORDED)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'tools' / 'build_progress.py'),
            str(log),
            str(time.time() - 61),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith('mmcv build: 9/77 files compiled (11 %), 1:0')
    missing = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'tools' / 'build_progress.py'),
            str(tmp_path / 'none.log'),
            str(time.time()),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert missing.startswith('mmcv build: configuring')
