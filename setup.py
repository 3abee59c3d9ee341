# setuptools reads cffi_modules only from setup(); everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["_build/uring_build.py:ffibuilder", "_build/resp_build.py:ffibuilder"],
    # The per-message paths of the uring backend and of the HTTP layer, in
    # plain C-API code (each file says why).
    ext_modules=[Extension(f"uringio._{name}", [f"_build/{name}.c"], depends=["_build/pyslots.h", "_build/uring_shared.h"],
                           extra_compile_args=["-O2", "-Wall"])
                 for name in ("fastpath", "httpcore")],
)
