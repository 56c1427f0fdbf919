#!/usr/bin/env bash
# A directory holding `transformers`, installed with `pip install --target`
# outside the venv, as most users' ML environments have it. mmpretrain 1.2.0
# fails at import beside it (`TypeError: NoneType takes no arguments` in its
# BLIP module), so tools/bootstrap.sh keeps it out of .venv;
# tests/test_beside_transformers.py puts this directory on PYTHONPATH in a
# subprocess to check that quadra_mm still imports and registers there.
#
# The packages it shares with the venv are pinned to the venv's versions (pip
# freeze as constraints), so that the directory can go first on the path
# without changing anything but adding transformers; the directory's name
# carries a hash of those versions, so a changed venv gets a fresh one.
#
# Usage: tools/transformers_target.sh            print the directory
#        tools/transformers_target.sh --install  install it first if missing
#                                                (about a minute once; cached)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
# A release that breaks mmpretrain 1.2.0's import (the test checks that it does).
SPEC="transformers==5.18.0"
CACHE="${QUADRA_MM_TRANSFORMERS_CACHE:-$HOME/.cache/quadra_mm}"

[[ -x "$PY" ]] || { echo "transformers_target: no $PY; run tools/bootstrap.sh" >&2; exit 1; }
CONSTRAINTS="$("$PY" -m pip --disable-pip-version-check freeze --exclude-editable 2>/dev/null \
    | grep -v -i -e '^quadra' -e '^-e ' || true)"
# Compiled dependencies (regex, tokenizers) are per python version and machine.
ABI="$("$PY" -c 'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')"
STACK="$(echo "$CONSTRAINTS" | sha256sum | cut -c1-8)"
DIR="$CACHE/${SPEC/==/-}-$ABI-$STACK"

if [[ "${1:-}" == "--install" && ! -f "$DIR/.complete" ]]; then
    # Into a fresh directory, then moved in place: an interrupted install never
    # looks complete. Directories made for an earlier state of the venv go.
    mkdir -p "$CACHE"
    rm -rf "$DIR.partial" "$CACHE/${SPEC/==/-}-$ABI"-*
    echo "$CONSTRAINTS" > "$CACHE/transformers-constraints.txt"
    "$PY" -m pip --disable-pip-version-check -q install --target "$DIR.partial" \
        -c "$CACHE/transformers-constraints.txt" "$SPEC" \
        2> >(grep -v "is ignored: it is neither" >&2)
    touch "$DIR.partial/.complete"
    mv "$DIR.partial" "$DIR"
fi
echo "$DIR"
