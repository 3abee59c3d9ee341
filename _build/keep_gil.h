/*
 * Which cffi calls release the GIL; prepended to the C source of both cffi
 * modules (_core/uring_build.py, protocols/resp_build.py).
 *
 * cffi releases the GIL around every call, but for a helper that returns at
 * once (prepare an SQE, copy bytes into a send stream, scan a RESP chunk)
 * giving the GIL up and taking it back costs more than the call itself: it
 * was a tenth of the user time of a 64-byte echo, once per message. So, as
 * CPython's own builtins do, our uio_* functions keep it, all but uio_turn,
 * where the loop sleeps in io_uring_enter and other threads must run.
 *
 * The cffi wrappers come after this text in the generated C file and use
 * these two macros; __func__ names the wrapper (_cffi_f_<function>). Should
 * cffi ever name them otherwise, nothing matches and every call releases
 * the GIL again: slower, never stuck.
 */
#include <string.h>
#define UIO_KEEPS_GIL(wrapper) (strncmp((wrapper), "_cffi_f_uio_", 12) == 0 \
                                && strcmp((wrapper), "_cffi_f_uio_turn") != 0)
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS \
    { PyThreadState *_uio_save = UIO_KEEPS_GIL(__func__) ? NULL : PyEval_SaveThread();
#define Py_END_ALLOW_THREADS \
    if (_uio_save != NULL) PyEval_RestoreThread(_uio_save); }
