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


class build_ext_with_liburing(build_ext):
    """Builds liburing first (vendored unless URINGIO_LIBURING=system; see
    _build/liburing_build.py), then links it into the extensions that use it.

    Done here rather than when setup.py is read, so that making an sdist or
    reading the metadata compiles nothing."""

    def run(self) -> None:
        try:
            lib = liburing_build.find(ROOT)
        except liburing_build.LiburingBuildError as exc:
            sys.exit(f"uringio: {exc}")
        for ext in self.extensions:
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
