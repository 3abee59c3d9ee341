/*
 * What the cffi binding (uringio._core._liburing: uring_helpers.c) and the C-API
 * module (uringio._core._fastpath: fastpath.c) agree on, written once: both
 * include this header, so a change to either side's view of the other is
 * a compile error, not memory read the wrong way.
 */
#ifndef URINGIO_URING_SHARED_H
#define URINGIO_URING_SHARED_H

#include <stddef.h>
#include <stdint.h>

struct uio_writers;

/* The writers (uring_helpers.c), as _fastpath's Writer and Dispatcher
 * reach them: uio_writer_api's address is handed to RingMemory.
 *   write      queue a copy of len bytes of data on writer wid; returns the
 *              bytes it holds and has not sent, or -errno of an earlier
 *              send that failed;
 *   write_ref  the same without a copy: data stays valid while token (a
 *              reference the caller took) is held; the writer hands token
 *              back through take_released once done with data. On a
 *              return < 0 it did not take it;
 *   take_released  up to max tokens handed back, into out: their count. */
struct uio_writer_api {
    long long (*write)(struct uio_writers *ws, int wid, const char *data, size_t len);
    long long (*write_ref)(struct uio_writers *ws, int wid, const char *data, size_t len,
                           void *token);
    unsigned (*take_released)(struct uio_writers *ws, void **out, unsigned max);
};

/* uio_turn's output: per CQE, three int64 -- user_data, res, flags. For a
 * CQE that names a provided buffer, the flags word's bits from
 * UIO_CQE_OFFSET_SHIFT up say where in that buffer its bytes start (not 0
 * only when buffers are consumed incrementally). */
#define UIO_CQE_WORDS 3
#define UIO_CQE_OFFSET_SHIFT 32

/* The user_data of an SQE, all 64 bits, the one statement of its layout
 * (Python reads these through the cffi binding: ring.py):
 *
 *   bit 63 set   UIO_WRITER_TAG | writer id: a writer's own send, settled in
 *                C by uio_turn, never seen by Python; with bit 61 set too
 *                (UIO_PUMP_TAG), a pump's recv, send or cancel
 *                (uring_pumps.c: the op in bits 32-33, the pump id below);
 *   bit 62 set   UIO_READ_TAG | slot: a file read of fastpath.c's FileReads,
 *                dispatched to it by the Dispatcher;
 *   otherwise    the id of an Op, an index into the op table
 *                (uringio/_core/uring/ops.py), below UIO_OP_ID_LIMIT.
 *
 * UIO_RELEASED_USER_DATA (a triple of uio_turn's, no CQE's): the writers
 * have tokens to hand back (uio_writer_api.take_released); res, how many.
 *
 * Writers report to Python as CQEs for the one user_data given to
 * uio_writers_new: res is -errno of a failed send or, with UIO_WRITER_LEVEL
 * in flags, the bytes still buffered; the rest of flags is the writer id.
 * A pump reports there too, once, when it ends: UIO_PUMP_REPORT | pump id
 * in flags, res 0 (its source's EOF, every byte sent) or -errno. */
#define UIO_WRITER_TAG (1ULL << 63)
#define UIO_RELEASED_USER_DATA (UIO_WRITER_TAG | 0xffffffffULL)
#define UIO_READ_TAG (1ULL << 62)
#define UIO_PUMP_TAG (1ULL << 61)
#define UIO_OP_ID_LIMIT UIO_PUMP_TAG
#define UIO_WRITER_LEVEL (1U << 31)
#define UIO_PUMP_REPORT (1U << 30)
#define UIO_WRITER_ID_MASK (UIO_PUMP_REPORT - 1)

#endif
