#!/usr/bin/env bash
# Set up (if needed) and run the side-by-side demo: the echo server on
# io_uring and on epoll, a short verified load against each, and a table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m uringio demo "$@"
