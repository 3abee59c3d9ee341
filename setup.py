# setuptools reads cffi_modules only from setup(); everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["_build/uring_build.py:ffibuilder", "_build/resp_build.py:ffibuilder"])
