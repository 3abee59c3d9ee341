# setuptools reads cffi_modules only from setup(); everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["_build/uring_build.py:ffibuilder", "_build/resp_build.py:ffibuilder"],
    # The uring backend's per-message paths, in plain C-API code (see the file).
    ext_modules=[Extension("uringio._fastpath", ["_build/fastpath.c"], depends=["_build/pyslots.h"],
                           extra_compile_args=["-O2", "-Wall"])],
)
