"""liburing for the build: the vendored release, or the system's when asked.

uringio links liburing statically. By default it is the release vendored in
``_build/vendor/liburing`` (its version is in that folder's
``liburing.spec``), configured and compiled here, so that ``pip install``
needs a C compiler and the Python headers and nothing else: distribution
packages lag the kernel features uringio uses (Ubuntu 22.04 ships 2.1,
Debian 12 ships 2.3), and io_uring users need a recent liburing more than most.

``URINGIO_LIBURING=system`` builds against the system's liburing instead
(>= 2.4, found with pkg-config; ``liburing.a`` when it is there, else
``-luring``): for distributions that package uringio and want one liburing.

The vendored build is liburing's own ``configure`` (a shell script that probes
the compiler and kernel headers and writes ``compat.h`` and ``config-host.h``),
run out of tree in ``build/liburing-VERSION``, then its five library sources
compiled with the flags of liburing's ``src/Makefile`` into ``liburing.a``
there. It is redone only when a vendored file or this script is newer than
that archive. Both setup.py (for the extensions) and the benchmarks' C
programs use it. A build with extra flags (setup.py passes URINGIO_SANITIZE's
``-fsanitize=...``) goes to a folder of its own, ``build/liburing-VERSION-``
and a digest of the flags, so it never replaces the plain archive that other
builds from the same checkout link.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor" / "liburing"
# The library proper, as liburing's src/Makefile lists it (with libc: no nolibc.c).
SOURCES = ("setup.c", "queue.c", "register.c", "syscall.c", "version.c")
# The oldest liburing uring_helpers.c compiles against: 2.4 synced the headers of
# kernel 6.4, where io_uring_buf_reg's "pad" became "flags".
MIN_SYSTEM = (2, 4)


class LiburingBuildError(RuntimeError):
    """liburing could not be configured, compiled or found; the message says why."""


@dataclass(frozen=True)
class Liburing:
    """What a C extension or program needs to compile and link liburing."""

    origin: str                                   # "vendored" or "system"
    version: str                                  # "2.15"
    include_dirs: list[str] = field(default_factory=list)
    extra_objects: list[str] = field(default_factory=list)   # liburing.a
    libraries: list[str] = field(default_factory=list)       # ["uring"] without a .a

    def gcc_args(self) -> list[str]:
        """Arguments for a gcc command line that compiles and links one program."""
        return ([f"-I{d}" for d in self.include_dirs] + self.extra_objects
                + [f"-l{lib}" for lib in self.libraries])


def vendored_version() -> str:
    """The vendored release's version, from its liburing.spec."""
    spec = (VENDOR / "liburing.spec").read_text()
    match = re.search(r"^Version:\s*(\S+)", spec, re.M)
    if not match:
        raise LiburingBuildError(f"no Version: line in {VENDOR / 'liburing.spec'}")
    return match.group(1)


def find(project_root: Path | str, extra_cflags: list[str] | tuple[str, ...] = ()) -> Liburing:
    """The liburing to build with, by ``URINGIO_LIBURING`` (vendored by default).

    ``extra_cflags`` are added to the vendored library's compile (the
    system's is used as it was built).

    Raises LiburingBuildError naming the cause and the fix.
    """
    choice = os.environ.get("URINGIO_LIBURING", "vendored")
    if choice == "vendored":
        name = f"liburing-{vendored_version()}"
        if extra_cflags:
            name += "-" + hashlib.sha256(" ".join(extra_cflags).encode()).hexdigest()[:8]
        return build_vendored(Path(project_root) / "build" / name, extra_cflags)
    if choice == "system":
        return system()
    raise LiburingBuildError(f"URINGIO_LIBURING={choice!r}: expected 'vendored' (the default) "
                             "or 'system'")


def _compiler() -> list[str]:
    """The C compiler Python's extensions are built with ($CC overrides it)."""
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise LiburingBuildError(f"{what}: {cmd[0]} not found; uringio's build needs a C "
                                 "compiler (apt-get install gcc libc6-dev)") from exc
    if done.returncode != 0:
        raise LiburingBuildError(f"{what} failed:\n$ {shlex.join(cmd)}\n"
                                 f"{done.stdout[-2000:]}{done.stderr[-4000:]}")


def build_vendored(out: Path, extra_cflags: list[str] | tuple[str, ...] = ()) -> Liburing:
    """Configure and compile the vendored liburing into ``out/liburing.a``,
    with ``extra_cflags`` after its own flags."""
    version = vendored_version()
    archive = out / "liburing.a"
    include_dirs = [str(out / "src" / "include"), str(VENDOR / "src" / "include")]
    newest = max(p.stat().st_mtime for p in [*VENDOR.rglob("*"), Path(__file__)] if p.is_file())
    if not archive.exists() or archive.stat().st_mtime < newest:
        out.mkdir(parents=True, exist_ok=True)
        cc = _compiler()
        # Out of tree: configure writes config-host.h and src/include/liburing/
        # {compat.h,io_uring_version.h} into the current directory. --use-libc: the
        # library calls the kernel through glibc's syscall(), not its own stubs,
        # so it needs none of nolibc's freestanding flags inside a Python extension.
        _run(["sh", str(VENDOR / "configure"), f"--cc={shlex.join(cc)}", "--use-libc"],
             out, f"configuring liburing {version}")
        # src/Makefile's flags, less -O3 (-O2 like the rest of uringio), plus -fPIC:
        # the archive goes into shared objects.
        flags = ["-D_GNU_SOURCE", "-D_LARGEFILE_SOURCE", "-D_FILE_OFFSET_BITS=64",
                 "-DLIBURING_INTERNAL", "-include", str(out / "config-host.h"),
                 *(f"-I{d}" for d in include_dirs),
                 "-O2", "-fPIC", "-Wall", "-Wno-unused-parameter", "-fno-stack-protector",
                 *extra_cflags]
        objects = []
        for name in SOURCES:
            obj = out / (name[:-2] + ".o")
            _run([*cc, *flags, "-c", str(VENDOR / "src" / name), "-o", str(obj)],
                 out, f"compiling liburing's {name}")
            objects.append(str(obj))
        archive.unlink(missing_ok=True)
        _run(["ar", "rcs", str(archive), *objects], out, "archiving liburing.a")
    return Liburing("vendored", version, include_dirs, [str(archive)])


def system() -> Liburing:
    """The system's liburing, through pkg-config; refuses one older than MIN_SYSTEM."""
    try:
        out = subprocess.run(["pkg-config", "--modversion", "--cflags-only-I", "liburing"],
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LiburingBuildError("URINGIO_LIBURING=system, but pkg-config finds no liburing: "
                                 "install liburing-dev, or unset URINGIO_LIBURING to build "
                                 "the vendored one") from exc
    version, include_dirs = out[0], [arg[2:] for arg in out[1:]]
    parts = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if parts < MIN_SYSTEM:
        raise LiburingBuildError(
            f"URINGIO_LIBURING=system found liburing {version}; uringio needs "
            f"{'.'.join(map(str, MIN_SYSTEM))} or newer: unset URINGIO_LIBURING to build "
            f"the vendored {vendored_version()}")
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "liburing"],
                            capture_output=True, text=True).stdout.strip()
    archive = Path(libdir) / "liburing.a"
    if archive.exists():
        return Liburing("system", version, include_dirs, [str(archive)])
    return Liburing("system", version, include_dirs, libraries=["uring"])


if __name__ == "__main__":
    # python _build/liburing_build.py [PROJECT_ROOT]: build it and print gcc's arguments.
    import sys

    lib = find(sys.argv[1] if len(sys.argv) > 1 else HERE.parent)
    print(shlex.join(lib.gcc_args()))
