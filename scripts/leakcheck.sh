#!/usr/bin/env bash
# uringio's C paths run over and over on CPython's debug interpreter, failing
# if references, memory blocks, malloc'd bytes or fds grow (scripts/leakcheck.py
# says how, and what it runs):
#
#     bash scripts/leakcheck.sh [-n N] [SCENARIO...]
#
# It installs Debian's debug interpreter (python3.11-dbg, whose
# sys.gettotalrefcount() sums every reference count; libpython3.11-dbg, a
# dependency, has its headers in /usr/include/python3.11d, which link to
# python3.11-dev's), makes .venv-dbg/ with it, and builds uringio into it
# from a copy of the checkout (the working tree, untracked files too; .venv
# and the checkout's uringio/ are left alone). cffi and httptools are built
# from source: the wheels PyPI has are built for the release interpreter,
# which loads them too, but their reference counting bypasses the debug
# total (leakcheck.py refuses to trust a run that loaded one).
# docs/testing.md has the last results.
set -euo pipefail
cd "$(dirname "$0")/.."

DBG=${DBG_PYTHON:-python3.11-dbg}
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v "$DBG" >/dev/null || need+=(python3.11-dbg)
[ -e /usr/include/python3.11d/Python.h ] || need+=(libpython3.11-dbg python3.11-dev)
"$DBG" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3.11-venv)
[ -e /usr/include/ffi.h ] || [ -e /usr/include/x86_64-linux-gnu/ffi.h ] \
    || pkg-config --exists libffi 2>/dev/null || need+=(libffi-dev)   # cffi from source
if [ ${#need[@]} -gt 0 ]; then
    echo "leakcheck: installing ${need[*]} with apt-get"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

VENV=.venv-dbg
PY=$VENV/bin/python
if [ ! -x "$PY" ]; then
    echo "leakcheck: creating $VENV with $DBG"
    "$DBG" -m venv "$VENV"
fi
"$PY" -c 'import sys; sys.exit(not hasattr(sys, "gettotalrefcount"))' || {
    echo "leakcheck: $PY is not a debug interpreter (no sys.gettotalrefcount): remove $VENV" >&2
    exit 2
}
"$PY" -m pip install -q --upgrade pip 'setuptools>=77' wheel
suffix=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
if ! ls "$VENV"/lib/python3*/site-packages/_cffi_backend"$suffix" >/dev/null 2>&1 \
        || ! ls "$VENV"/lib/python3*/site-packages/httptools/parser/parser"$suffix" >/dev/null 2>&1; then
    echo "leakcheck: building cffi and httptools for the debug interpreter"
    "$PY" -m pip install -q --force-reinstall --no-binary cffi,httptools 'cffi>=1.15' \
        'httptools>=0.5'
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/uringio-dbg-src-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$PY" -c 'import sys; sys.path.insert(0, "scripts"); from pathlib import Path
from checkout_copy import copy_checkout; copy_checkout(Path(sys.argv[1]), package=True, untracked=True)' "$tmp"
started=$SECONDS
# A directory is always built and installed again, whatever its version.
env -u URINGIO_SANITIZE "$PY" -m pip install -q --no-build-isolation "$tmp"
echo "leakcheck: built uringio for $("$PY" -c 'import sys; print(sys.version.split()[0])') (debug) in $((SECONDS - started)) s"
rm -rf "$tmp"
# From scripts/: its folder is first on sys.path, not the checkout's uringio/.
exec "$PY" scripts/leakcheck.py "$@"
