#!/usr/bin/env bash
# Usage: tools/dist_launch.sh NUM_PROCS SCRIPT.py [script args...]
# torchrun over the tools/ script; NNODES, NODE_RANK, PORT, MASTER_ADDR as in mmdet.
NPROC=$1
SCRIPT=$2
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
exec python -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" \
    --master_port="${PORT:-29500}" \
    "$(dirname "$0")/$SCRIPT" "${@:3}"
