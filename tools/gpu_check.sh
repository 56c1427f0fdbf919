#!/usr/bin/env bash
# The prepared check of the CUDA paths, for the lent H200 (see /work/.library/device):
#
#   bash tools/gpu_check.sh [--out DIR]     # on the GPU machine; DIR defaults to $OUT
#   bash tools/gpu_check.sh --dry-run --out DIR   # the same steps on the CPU, tiny (CI)
#
# It runs on the device's own python3 (torch, triton, timm; no OpenMMLab): the repo
# goes on PYTHONPATH, and only the torch-only packages (quadra_mm.ops, .adapters,
# .deploy) are used. Budget on the H200, estimated: tests 1 min, AMP steps and the
# export check 2 min, benchmark 4 min (bf16 and fp16, eager and compiled), profile
# 10 s: under 8 min. Everything lands under DIR: tests.log, gpu_check.json,
# profile.txt, benchmark.md, summary.txt.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY=0
DIR="${OUT:-$ROOT/work_dirs/gpu_check}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) DIR="$2"; shift ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$DIR"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$ROOT"
status=0
step() { local name=$1; shift; local start=$SECONDS
    if "$@"; then echo "$name: ok ($((SECONDS - start)) s)"; else echo "$name: FAILED ($((SECONDS - start)) s)"; status=1; fi
}

# 1. The torch-only tests, CUDA cases included (they skip without a GPU).
step tests bash -c "$PY -m pytest -q -rs -p no:cacheprovider tests/test_ops.py tests/test_analytic_backward.py > '$DIR/tests.log' 2>&1" | tee -a "$DIR/summary.txt"
# 2 and 4. AMP training steps, the exported/Triton check, the profile.
step amp-export-profile bash -c "$PY tools/gpu_check.py --out '$DIR' $([[ $DRY == 1 ]] && echo --dry-run) > '$DIR/gpu_check.log' 2>&1" | tee -a "$DIR/summary.txt"
# 3. The cost table, timm/torchvision zoo.
if [[ $DRY == 1 ]]; then
    BENCH="--device cpu --batch-size 2 --image-size 32 --repeats 1 --warmup 0 --models ConvNeXt-T --dtype bf16"
else
    BENCH="--device cuda --batch-size 128 --repeats 5 --dtype bf16 fp16 --compile"
fi
step benchmark bash -c "$PY tools/benchmark_adapters.py --zoo timm $BENCH --no-placement --no-pruned --no-detector --out '$DIR/benchmark.md' > '$DIR/benchmark.log' 2>&1" | tee -a "$DIR/summary.txt"
grep -q FAILED "$DIR/summary.txt" && status=1
echo "gpu_check: results in $DIR" | tee -a "$DIR/summary.txt"
exit $status
