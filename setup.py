# setuptools reads cffi_modules only from setup(); everything else is in pyproject.toml.
import os
import sys

if not sys.platform.startswith("linux"):
    sys.exit(f"uringio runs on Linux only (io_uring and epoll are Linux's); "
             f"this is {sys.platform}")

from setuptools import Extension, setup  # noqa: E402
from setuptools.command.build_ext import build_ext  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "_build"))
import liburing_build  # noqa: E402

# The HTTP parser both HTTP paths call back from (_build/vendor/llhttp).
LLHTTP = [f"_build/vendor/llhttp/src/{name}.c" for name in ("api", "http", "llhttp")]
# The extensions that include liburing.h: the cffi binding and the CQE dispatcher.
USES_LIBURING = {"uringio._core._liburing", "uringio._core._fastpath"}
# URINGIO_SANITIZE=address,undefined: the sanitizers gcc and clang both name this way.
SANITIZERS = ("address", "undefined")


def sanitizer_flags() -> list[str]:
    """The compile and link flags URINGIO_SANITIZE asks for; none when it is unset.

    ``URINGIO_SANITIZE=address,undefined`` (or either one) builds every C
    extension -- the cffi modules, the C-API modules and the llhttp they
    compile in -- and the vendored liburing with ``-fsanitize=...``: debug
    information and frame pointers, so that a report names file and line,
    and ``-O1`` (placed after the extensions' ``-O2``, so it wins), which
    keeps ASan's reports exact without the crawl of ``-O0``. The modules then
    need the sanitizer's runtime loaded first in the process:
    scripts/sanitize.sh makes such an interpreter and runs the tests with it
    (docs/testing.md).
    """
    wanted = [name for name in os.environ.get("URINGIO_SANITIZE", "").split(",") if name]
    unknown = [name for name in wanted if name not in SANITIZERS]
    if unknown:
        sys.exit(f"uringio: URINGIO_SANITIZE={os.environ['URINGIO_SANITIZE']!r}: "
                 f"unknown {', '.join(unknown)}; expected a comma-separated list of "
                 f"{' and '.join(SANITIZERS)}")
    if not wanted:
        return []
    return [f"-fsanitize={','.join(wanted)}", "-fno-omit-frame-pointer", "-g", "-O1"]


class build_ext_with_liburing(build_ext):
    """Builds liburing first (vendored unless URINGIO_LIBURING=system; see
    _build/liburing_build.py), then links it into the extensions that use it;
    adds URINGIO_SANITIZE's flags to every extension (``sanitizer_flags``).

    Done here rather than when setup.py is read, so that making an sdist or
    reading the metadata compiles nothing."""

    def run(self) -> None:
        sanitize = sanitizer_flags()
        try:
            lib = liburing_build.find(ROOT, extra_cflags=sanitize)
        except liburing_build.LiburingBuildError as exc:
            sys.exit(f"uringio: {exc}")
        for ext in self.extensions:
            # Every extension: the four below and the two cffi_modules add.
            ext.extra_compile_args += sanitize
            ext.extra_link_args += sanitize
            if ext.name in USES_LIBURING:
                ext.include_dirs[:0] = lib.include_dirs
                ext.extra_objects += lib.extra_objects
                ext.libraries += lib.libraries
                ext.define_macros.append(
                    ("UIO_LIBURING_VERSION", f'"{lib.version} ({lib.origin})"'))
        super().run()


setup(
    cmdclass={"build_ext": build_ext_with_liburing},
    cffi_modules=["_build/_core/uring_build.py:ffibuilder",
                  "_build/protocols/resp_build.py:ffibuilder"],
    # The per-message paths of the uring backend, the asyncio loop and the HTTP layer, in
    # plain C-API code (each file says why).
    ext_modules=[
        Extension("uringio._core._fastpath", ["_build/_core/fastpath.c"],
                  include_dirs=["_build"],
                  depends=["_build/pyslots.h", "_build/raised.h", "_build/_core/uring_shared.h"],
                  extra_compile_args=["-O2", "-Wall"]),
        Extension("uringio.aio._ready", ["_build/aio/ready.c"],
                  include_dirs=["_build"], depends=["_build/pyslots.h", "_build/raised.h"],
                  extra_compile_args=["-O2", "-Wall"]),
        Extension("uringio.protocols._httpcore", ["_build/protocols/httpcore.c", *LLHTTP],
                  include_dirs=["_build", "_build/vendor/llhttp/include"],
                  depends=["_build/pyslots.h", "_build/http_glue.h", "_build/raised.h"],
                  extra_compile_args=["-O2", "-Wall"]),
        Extension("uringio.asgi._asgicore", ["_build/asgi/asgicore.c", *LLHTTP],
                  include_dirs=["_build", "_build/vendor/llhttp/include"],
                  depends=["_build/pyslots.h", "_build/http_glue.h", "_build/raised.h",
                           "_build/vendor/llhttp/include/llhttp.h"],
                  extra_compile_args=["-O2", "-Wall"]),
    ],
)
