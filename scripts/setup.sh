#!/usr/bin/env bash
# Set up a uringio checkout on Debian/Ubuntu: system packages (a C compiler,
# the Python headers, venv), then .venv/ with uringio installed in editable
# mode (its build compiles the vendored liburing, _build/vendor/liburing). With --test, also the real clients and servers the tests
# drive (curl, redis-cli, redis-benchmark, redis-server, ss, systemd-socket-activate, openssl) and
# anyio's test suite. Safe to run again:
# it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v "$PY" >/dev/null || need+=(python3 python3-venv python3-dev)
if [ "${1:-}" = "--test" ]; then
    command -v curl >/dev/null || need+=(curl)
    command -v pkg-config >/dev/null || need+=(pkg-config)   # tests/test_liburing_build.py
    command -v redis-benchmark >/dev/null || need+=(redis-tools)
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v ss >/dev/null || need+=(iproute2)                      # --backlog, seen by ss
    command -v systemd-socket-activate >/dev/null || need+=(systemd)  # socket activation
    command -v openssl >/dev/null || need+=(openssl)                  # the TLS tests' certificates
fi
if command -v "$PY" >/dev/null; then
    "$PY" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
    inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -e "$inc/Python.h" ] || need+=(python3-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]} with apt-get"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.uringio-installed
stale=
if [ -e "$stamp" ] && [ -n "$(find pyproject.toml setup.py _build -newer "$stamp" -print -quit)" ]; then
    stale=1
fi
if [ ! -e "$stamp" ] || [ -n "$stale" ] \
        || ! .venv/bin/python -c 'import uringio._core._liburing, uringio._core._fastpath, uringio.aio._ready, uringio.protocols._resp, uringio.protocols._httpcore, uringio.asgi._asgicore' 2>/dev/null; then
    echo "setup: installing uringio (editable) and its test and benchmark tools"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,bench]'
    touch "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
    # anyio's own test suite is in its sdist, not its wheel: the installed
    # release's, for tests/test_trio_suite.py, in the user's cache (the
    # suite run against the installed wheel, from a copy of the checkout,
    # finds it there too).
    ver=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("anyio"))')
    foreign="${XDG_CACHE_HOME:-$HOME/.cache}/uringio"
    if [ ! -d "$foreign/anyio-$ver/tests" ]; then
        echo "setup: fetching anyio $ver's test suite (its sdist) into $foreign"
        tmp=$(mktemp -d)
        .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$tmp" "anyio==$ver"
        mkdir -p "$foreign"
        tar -xzf "$tmp"/anyio-"$ver".tar.gz -C "$foreign"
        rm -rf "$tmp"
    fi
fi
