#!/usr/bin/env bash
# The test suite against uringio's C built with AddressSanitizer and
# UndefinedBehaviorSanitizer:
#
#     bash scripts/sanitize.sh [PYTEST_ARGS...]     (no arguments: the whole suite)
#     bash scripts/sanitize.sh --c-paths [PYTEST_ARGS...]   (the C's test files: CI)
#
# It builds every C module -- the cffi binding, the CQE dispatcher, the
# asyncio ready queue, both HTTP cores with their llhttp, the RESP scanner --
# and the vendored liburing with URINGIO_SANITIZE=address,undefined (setup.py)
# into .venv-asan/, runs pytest there, and fails when any sanitized process
# reported anything (build/sanitize-reports/), even if every test passed.
# docs/testing.md has the last results.
#
# Why an interpreter of its own rather than LD_PRELOAD. ASan's runtime must
# be the first library a process loads. LD_PRELOAD does that, but it is an
# environment variable: every program the tests start inherits it -- curl,
# redis-cli, redis-server, redis-benchmark, gcc, ruff -- and runs with ASan
# (and without PYTHONMALLOC's meaning), which made those tests time out.
# Stripping it again in a sitecustomize covers only children started from
# Python through os.environ, not an env= the test builds itself, nor a shell
# in between. Instead .venv-asan is made with `venv --copies`, and its
# bin/python* (a copy of the interpreter) get libasan and libubsan as their
# first DT_NEEDED entries (patchelf --add-needed). So the sanitizer is in
# exactly the processes that run .venv-asan/bin/python -- the test process
# and the `python -m uringio` servers and helpers it starts with
# sys.executable -- and in nothing else, with no variable to leak. The
# runtimes are the ones the built extensions link (readelf), so the
# interpreter and the modules cannot disagree about which libasan.
#
# What each process gets (scripts/sanitize.py): PYTHONMALLOC=malloc, so that
# ASan sees every Python object; ASAN_OPTIONS detect_leaks=0 (CPython's
# own memory at exit; leaks are scripts/leakcheck.sh's), halt_on_error=1,
# detect_stack_use_after_return=1, allocator_may_return_null=1 and a
# log_path; UBSAN_OPTIONS print_stacktrace=1:halt_on_error=1 and a log_path,
# which gcc 12's libubsan ignores, so a .pth hook in .venv-asan sets it
# through __sanitizer_set_report_path. Reports go to files, never into the
# stderr a test reads or captures from its servers; any file there fails
# the run. Other programs see those variables too, and ignore them.
#
# The tests import the sanitized build: they run from a copy of the checkout
# without uringio/ (scripts/checkout_copy.py, as scripts/dist.py does), under
# URINGIO_TEST_INSTALLED=1, which tests/conftest.py checks. The build is from
# the working tree as it is, untracked files included; it never touches
# .venv or the checkout's own build/.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v readelf >/dev/null || need+=(binutils)
# gcc's sanitizer runtimes (gcc 12: libasan8, libubsan1).
[ -e "$(gcc -print-file-name=libasan.so 2>/dev/null)" ] || need+=(libasan8)
[ -e "$(gcc -print-file-name=libubsan.so 2>/dev/null)" ] || need+=(libubsan1)
"$PY" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -e "$inc/Python.h" ] || need+=(python3-dev)
# The real clients and servers the tests drive (as scripts/setup.sh --test).
command -v curl >/dev/null || need+=(curl)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
    echo "sanitize: installing ${need[*]} with apt-get"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
exec "$PY" scripts/sanitize.py "$@"
