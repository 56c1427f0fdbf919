#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
exec "$(dirname "$0")/dist_launch.sh" "$2" train.py "$1" --launcher pytorch "${@:3}"
