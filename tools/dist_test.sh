#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args...]
exec "$(dirname "$0")/dist_launch.sh" "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
