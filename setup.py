# setuptools reads cffi_modules only from setup(); everything else is in pyproject.toml.
from setuptools import Extension, setup

# The HTTP parser both HTTP paths call back from (_build/vendor/llhttp).
LLHTTP = [f"_build/vendor/llhttp/src/{name}.c" for name in ("api", "http", "llhttp")]

setup(
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
