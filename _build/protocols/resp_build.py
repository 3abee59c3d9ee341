"""cffi API-mode build of ``uringio.protocols._resp``: the RESP server's framing check
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
# keeps the GIL (keep_gil.h, shared with the liburing binding).
HERE = os.path.dirname(os.path.abspath(__file__))
ffibuilder.set_source(
    "uringio.protocols._resp",
    open(os.path.join(HERE, os.pardir, "keep_gil.h")).read() + open(os.path.join(HERE, "resp_scan.c")).read(),
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
