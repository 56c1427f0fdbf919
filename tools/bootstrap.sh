#!/usr/bin/env bash
# Idempotent set-up of the quadra-mm environment in ./.venv.
#
# Every workaround for the torch 2.14 / OpenMMLab 2.x stack lives here, once:
#   * torch/torchvision are pinned together: PyPI's torchvision does not load
#     beside another torch build ("operator torchvision::nms does not exist").
#   * setuptools>=77 (torch needs it) and <82: mmcv's setup.py and mmengine's
#     `mmdet::` base-config resolution import pkg_resources, removed in 82.
#   * mmcv 2.1.0 ships only an sdist. It is built with --no-build-isolation
#     (an isolated build cannot see torch and silently skips the C++ ops), and
#     with -std=c++20 instead of its hard-coded -std=c++17 (torch 2.14's headers
#     refuse anything older). The wheel is cached outside the repo and reused.
#   * transformers is removed if present: mmpretrain 1.2.0 fails at import
#     (blip2) beside a recent one. The tests still check quadra_mm beside it:
#     tools/transformers_target.sh installs it into a cached --target directory
#     outside the venv (about a minute once; never fatal: only that test needs it).
# Usage: tools/bootstrap.sh            (QUADRA_MM_WHEEL_CACHE overrides the cache)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
SETUPTOOLS_SPEC="setuptools>=77,<82"
MMCV_VERSION="2.1.0"
CACHE="${QUADRA_MM_WHEEL_CACHE:-$HOME/.cache/quadra_mm/wheels}/torch-2.14.1-$(uname -m)"
STAMP="$VENV/.quadra_mm_bootstrap"

die() { echo "bootstrap: ERROR: $*" >&2; exit 1; }
log() { echo "bootstrap: $*"; }

# The stamp records the inputs of the last successful run; equal inputs and a
# working import of the stack mean there is nothing to do.
inputs_hash() { cat "$ROOT/setup.py" "$ROOT/tools/bootstrap.sh" "$ROOT/tools/transformers_target.sh" | sha256sum | cut -d' ' -f1; }

# transformers for tests/test_beside_transformers.py, outside the venv (cached).
transformers_target() {
    bash "$ROOT/tools/transformers_target.sh" --install >/dev/null \
        || log "WARNING: could not install transformers for tests/test_beside_transformers.py"
}

verify() {
    "$VENV/bin/python" - <<'PY' || return 1
import importlib, sys
try:
    import mmcv, mmcv._ext  # noqa: F401  the compiled ops, not just the python package
except ImportError as e:
    sys.exit(f"bootstrap: ERROR: mmcv without its C++ ops ({e}); remove the cached mmcv wheel and rerun")
import torch, torchvision, mmengine, mmdet, mmpretrain.models, pycocotools, quadra_mm  # noqa: F401
try:
    importlib.import_module("transformers")
    sys.exit("bootstrap: ERROR: transformers is installed; it breaks `import mmpretrain`")
except ImportError:
    pass
print(f"bootstrap: ok: torch {torch.__version__}, mmcv {mmcv.__version__} (ops), "
      f"mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}")
PY
}

# The adaptation study's data (tools/run_study.py, tests/test_study.py): Fashion-MNIST
# from the Debian package dataset-fashion-mnist. Installed here when missing and
# apt-get may run (root); otherwise tools/run_study.py says what to run. Never fatal:
# only the study needs it.
FASHION_MNIST=/usr/share/datasets/fashion-mnist
if [[ ! -f "$FASHION_MNIST/t10k-labels-idx1-ubyte.gz" ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "installing the Debian package dataset-fashion-mnist (study data)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } \
            >/dev/null 2>&1 || log "WARNING: apt-get could not install dataset-fashion-mnist"
    else
        log "WARNING: no $FASHION_MNIST; for tools/run_study.py run: sudo apt-get install -y dataset-fashion-mnist"
    fi
fi

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(inputs_hash)" ]] && verify 2>/dev/null; then
    transformers_target
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || { log "creating $VENV"; "$PY" -m venv "$VENV" || die "cannot create venv with $PY"; }
# pip's machine-wide config may list index folders that do not exist; its
# "is ignored" warnings about them are noise.
pip_q() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

log "installing torch and build tools"
pip_q install "$SETUPTOOLS_SPEC" wheel ninja "numpy>=1.26" || die "pip could not install setuptools/wheel/ninja/numpy"
pip_q install $TORCH_SPEC || die "pip could not install $TORCH_SPEC"

mkdir -p "$CACHE"
MMCV_WHEEL="$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$MMCV_WHEEL" ]]; then
    log "building mmcv $MMCV_VERSION with CPU ops (about 8 minutes on 2 idle cores; cached in $CACHE)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    pip_q download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD" || die "cannot download the mmcv $MMCV_VERSION sdist"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    grep -q -- "-std=c++17" "$SRC/setup.py" || die "mmcv setup.py no longer sets -std=c++17; revisit the C++20 patch"
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    # Debug info (python's CFLAGS carry -g) is half of each file's compile time
    # (measured: 14.2 -> 7.1 s for pytorch/roi_align.cpp); -g0 after it drops it
    # without changing the generated code (-O3 stays; the disassembly of
    # pytorch/cpu/roi_align.o is identical with and without it).
    sed -i "s/extra_compile_args\['cxx'\] = \['-std=c++20'\]/extra_compile_args['cxx'] = ['-std=c++20', '-g0']/" "$SRC/setup.py"
    grep -q -- "'-std=c++20', '-g0'" "$SRC/setup.py" || die "mmcv setup.py: the -g0 patch did not apply; revisit it"
    # -v lets ninja's [n/N] lines reach the log; build_progress.py reads them.
    START="$(date +%s)"
    ( cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="$(nproc)" \
        "$VENV/bin/python" -m pip --disable-pip-version-check -v wheel --no-build-isolation --no-deps . -w "$BUILD/dist" ) \
        > "$BUILD/build.log" 2>&1 &
    BUILD_PID=$!
    while kill -0 "$BUILD_PID" 2>/dev/null; do
        for _ in $(seq 60); do kill -0 "$BUILD_PID" 2>/dev/null && sleep 1; done
        kill -0 "$BUILD_PID" 2>/dev/null && log "$("$PY" "$ROOT/tools/build_progress.py" "$BUILD/build.log" "$START")"
    done
    BUILD_OK=0; wait "$BUILD_PID" || BUILD_OK=$?
    # The log and ninja's per-file times stay beside the wheel, for the next look at build time.
    cp "$BUILD/build.log" "$CACHE/mmcv-build.log"
    find "$SRC/build" -name .ninja_log -exec cp {} "$CACHE/mmcv-build.ninja_log" \; 2>/dev/null || true
    [[ "$BUILD_OK" == 0 ]] || { tail -n 30 "$BUILD/build.log" >&2; die "mmcv build failed (log above)"; }
    log "mmcv built in $(( ($(date +%s) - START) / 60 )) min $(( ($(date +%s) - START) % 60 )) s"
    cp "$BUILD"/dist/mmcv-*.whl "$CACHE"/
    MMCV_WHEEL="$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
fi
log "installing $(basename "$MMCV_WHEEL") and the OpenMMLab stack"
pip_q install --find-links "$CACHE" "$MMCV_WHEEL" || die "cannot install $MMCV_WHEEL"
pip_q install --find-links "$CACHE" --no-build-isolation -e "$ROOT[tests]" || die "pip install -e . failed"
pip_q uninstall -y transformers >/dev/null 2>&1 || true

verify || die "the installed stack does not import (see above)"
transformers_target
inputs_hash > "$STAMP"
