"""cffi API-mode build of ``uringio._resp``: the RESP server's framing check
(``resp_scan.c``). It needs nothing but a C compiler, so it is its own module,
apart from the liburing binding."""

import os

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef("""
struct uio_resp_scan { size_t consumed; size_t lines; };
struct uio_resp_scan uio_resp_scan(const char *buf, size_t len);
""")
# The scan never waits and takes a fraction of a microsecond a request: it
# keeps the GIL rather than pay for giving it up and back (cffi's wrappers,
# generated after this text, release it around every call through these
# two macros; see uring_build.py).
GIL_POLICY = r"""
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
"""

ffibuilder.set_source(
    "uringio._resp",
    GIL_POLICY + open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "resp_scan.c")).read(),
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
