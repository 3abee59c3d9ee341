"""cffi API-mode build of ``uringio._liburing``.

Most of liburing is ``static inline`` (IOURINGINLINE), so it cannot be reached
through ``dlopen``: this script compiles a small extension against liburing's
header and links ``liburing.a`` statically, so the built module has no run-time
dependency on the shared library.

The C helpers are shaped for the cost model of Python: a foreign call costs
far more than the C work inside it, so

* one call prepares one SQE completely (get_sqe + prep + flags + user_data),
  and flushes the SQ itself when it is full;
* one call per loop turn returns consumed buffers to the buffer ring, submits,
  waits, and copies a whole batch of CQEs out as (user_data, res, flags)
  triples, advancing the CQ once.
"""

import os
import re
import subprocess

from cffi import FFI

CDEF = r"""
struct io_uring { ...; };
struct io_uring_probe;
struct __kernel_timespec { int64_t tv_sec; long long tv_nsec; };

#define IORING_SETUP_IOPOLL ...
#define IORING_SETUP_SQPOLL ...
#define IORING_SETUP_CQSIZE ...
#define IORING_SETUP_CLAMP ...
#define IORING_SETUP_SUBMIT_ALL ...
#define IORING_SETUP_COOP_TASKRUN ...
#define IORING_SETUP_TASKRUN_FLAG ...
#define IORING_SETUP_SINGLE_ISSUER ...
#define IORING_SETUP_DEFER_TASKRUN ...

#define IORING_FEAT_NODROP ...
#define IORING_FEAT_FAST_POLL ...
#define IORING_FEAT_EXT_ARG ...
#define IORING_FEAT_CQE_SKIP ...

#define IOSQE_IO_LINK ...
#define IOSQE_IO_HARDLINK ...
#define IOSQE_BUFFER_SELECT ...
#define IOSQE_CQE_SKIP_SUCCESS ...

#define IORING_CQE_F_BUFFER ...
#define IORING_CQE_F_MORE ...
#define IORING_CQE_F_SOCK_NONEMPTY ...
#define IORING_CQE_F_NOTIF ...
#define IORING_CQE_BUFFER_SHIFT ...

#define IORING_ASYNC_CANCEL_ALL ...
#define IORING_ASYNC_CANCEL_FD ...
#define IORING_ASYNC_CANCEL_ANY ...

#define IORING_TIMEOUT_ABS ...

#define IORING_OP_NOP ...
#define IORING_OP_READ ...
#define IORING_OP_WRITE ...
#define IORING_OP_SENDMSG ...
#define IORING_OP_RECVMSG ...
#define IORING_OP_TIMEOUT ...
#define IORING_OP_ACCEPT ...
#define IORING_OP_ASYNC_CANCEL ...
#define IORING_OP_LINK_TIMEOUT ...
#define IORING_OP_CONNECT ...
#define IORING_OP_CLOSE ...
#define IORING_OP_SEND ...
#define IORING_OP_RECV ...
#define IORING_OP_SPLICE ...
#define IORING_OP_PROVIDE_BUFFERS ...
#define IORING_OP_SHUTDOWN ...
#define IORING_OP_SEND_ZC ...
#define IORING_OP_SENDMSG_ZC ...
#define IORING_OP_LAST ...


struct uio_bufring {
    unsigned entries;
    unsigned size;
    int bgid;
    char *base;
    ...;
};

int uio_queue_init(struct io_uring *ring, unsigned entries, unsigned cq_entries,
                   unsigned flags, unsigned *features);
const char *uio_liburing_version(void);
void uio_queue_exit(struct io_uring *ring);
int uio_ring_fd(struct io_uring *ring);
int io_uring_register_ring_fd(struct io_uring *ring);
int uio_sq_space_left(struct io_uring *ring);

struct io_uring_probe *io_uring_get_probe_ring(struct io_uring *ring);
void io_uring_free_probe(struct io_uring_probe *probe);
int io_uring_opcode_supported(const struct io_uring_probe *p, int op);

int uio_prep_nop(struct io_uring *ring, uint64_t user_data, unsigned sqe_flags);
int uio_prep_accept(struct io_uring *ring, int fd, int multishot, int flags,
                    uint64_t user_data);
int uio_prep_recv(struct io_uring *ring, int fd, void *buf, unsigned len,
                  int flags, uint64_t user_data);
int uio_prep_recv_multishot(struct io_uring *ring, int fd, int bgid, int flags,
                            uint64_t user_data);
int uio_prep_send(struct io_uring *ring, int fd, const void *buf, unsigned len,
                  int flags, uint64_t user_data);
int uio_prep_read(struct io_uring *ring, int fd, void *buf, unsigned len,
                  uint64_t offset, uint64_t user_data);
int uio_prep_close(struct io_uring *ring, int fd, uint64_t user_data, unsigned sqe_flags);
int uio_prep_timeout(struct io_uring *ring, struct __kernel_timespec *ts,
                     unsigned count, unsigned flags, uint64_t user_data);
int uio_prep_cancel64(struct io_uring *ring, uint64_t target, int flags,
                      uint64_t user_data, unsigned sqe_flags);
int uio_prep_cancel_fd(struct io_uring *ring, int fd, int flags,
                       uint64_t user_data, unsigned sqe_flags);

int uio_submit(struct io_uring *ring);
int uio_turn(struct io_uring *ring, struct uio_bufring *br, const int *bids,
             unsigned nbids, unsigned wait_nr, long long timeout_ns,
             int64_t *out, unsigned max);

int uio_bufring_setup(struct io_uring *ring, struct uio_bufring *br,
                      unsigned entries, unsigned size, int bgid);
void uio_bufring_free(struct io_uring *ring, struct uio_bufring *br);
"""

SOURCE = r"""
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <liburing.h>

/* liburing 2.3 has no version macros: the build passes what pkg-config says. */
const char *uio_liburing_version(void) { return UIO_LIBURING_VERSION; }

struct uio_bufring {
    unsigned entries;
    unsigned size;
    int bgid;
    char *base;
    struct io_uring_buf_ring *br;
    unsigned mask;
};

int uio_queue_init(struct io_uring *ring, unsigned entries, unsigned cq_entries,
                   unsigned flags, unsigned *features)
{
    struct io_uring_params p;
    int ret;

    memset(&p, 0, sizeof(p));
    p.flags = flags;
    if (cq_entries) {
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
    }
    ret = io_uring_queue_init_params(entries, ring, &p);
    if (ret == 0 && features)
        *features = p.features;
    return ret;
}

void uio_queue_exit(struct io_uring *ring) { io_uring_queue_exit(ring); }
int uio_ring_fd(struct io_uring *ring) { return ring->ring_fd; }
int uio_sq_space_left(struct io_uring *ring) { return io_uring_sq_space_left(ring); }

/* A full SQ is flushed to the kernel and the SQE taken again: callers never
 * see "no SQE" unless the kernel refuses to take any (then -EBUSY). */
static struct io_uring_sqe *uio_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe == NULL) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

#define UIO_SQE(ring, sqe)                 \
    struct io_uring_sqe *sqe = uio_sqe(ring); \
    if (sqe == NULL)                        \
        return -EBUSY

int uio_prep_nop(struct io_uring *ring, uint64_t user_data, unsigned sqe_flags)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_nop(sqe);
    sqe->flags |= sqe_flags;
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_accept(struct io_uring *ring, int fd, int multishot, int flags,
                    uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    if (multishot)
        io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, flags);
    else
        io_uring_prep_accept(sqe, fd, NULL, NULL, flags);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_recv(struct io_uring *ring, int fd, void *buf, unsigned len,
                  int flags, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_recv(sqe, fd, buf, len, flags);
    sqe->user_data = user_data;
    return 0;
}

/* io_uring_prep_recv_multishot(3): the kernel picks a buffer from group
 * bgid for each completion; the buffer id is in cqe->flags >> 16. */
int uio_prep_recv_multishot(struct io_uring *ring, int fd, int bgid, int flags,
                            uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, flags);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_send(struct io_uring *ring, int fd, const void *buf, unsigned len,
                  int flags, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_send(sqe, fd, buf, len, flags);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_read(struct io_uring *ring, int fd, void *buf, unsigned len,
                  uint64_t offset, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_read(sqe, fd, buf, len, offset);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_close(struct io_uring *ring, int fd, uint64_t user_data, unsigned sqe_flags)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_close(sqe, fd);
    sqe->flags |= sqe_flags;
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_timeout(struct io_uring *ring, struct __kernel_timespec *ts,
                     unsigned count, unsigned flags, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_timeout(sqe, ts, count, flags);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_cancel64(struct io_uring *ring, uint64_t target, int flags,
                      uint64_t user_data, unsigned sqe_flags)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_cancel64(sqe, target, flags);
    sqe->flags |= sqe_flags;
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_cancel_fd(struct io_uring *ring, int fd, int flags,
                       uint64_t user_data, unsigned sqe_flags)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_cancel_fd(sqe, fd, flags);
    sqe->flags |= sqe_flags;
    sqe->user_data = user_data;
    return 0;
}

int uio_submit(struct io_uring *ring) { return io_uring_submit(ring); }

/* One loop turn in one foreign call:
 *   1. hand the buffers consumed since the last turn back to the buffer ring,
 *   2. submit the SQ and wait for wait_nr CQEs, at most timeout_ns
 *      (< 0: no limit; 0 with wait_nr 0: just run task work and look),
 *   3. copy up to max CQEs into out as (user_data, res, flags) and advance.
 * Returns the number of CQEs copied, or -errno from the wait (-EINTR when a
 * signal arrived: the caller runs its handlers and calls again). -ETIME is
 * not an error here: it is a timeout, and the CQEs present are returned. */
int uio_turn(struct io_uring *ring, struct uio_bufring *br, const int *bids,
             unsigned nbids, unsigned wait_nr, long long timeout_ns,
             int64_t *out, unsigned max)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0, i;
    int ret;

    if (nbids) {
        for (i = 0; i < nbids; i++)
            io_uring_buf_ring_add(br->br, br->base + (size_t)bids[i] * br->size,
                                  br->size, bids[i], br->mask, i);
        io_uring_buf_ring_advance(br->br, nbids);
    }

    if (wait_nr == 0) {
        ret = io_uring_submit_and_get_events(ring);
    } else if (timeout_ns < 0) {
        ret = io_uring_submit_and_wait(ring, wait_nr);
    } else {
        struct __kernel_timespec ts;
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        ret = io_uring_submit_and_wait_timeout(ring, &cqe, wait_nr, &ts, NULL);
        if (ret == -ETIME)
            ret = 0;
    }
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return ret;

    io_uring_for_each_cqe(ring, head, cqe) {
        if (n == max)
            break;
        out[3 * n] = (int64_t)cqe->user_data;
        out[3 * n + 1] = cqe->res;
        out[3 * n + 2] = cqe->flags;
        n++;
    }
    io_uring_cq_advance(ring, n);
    if (n == 0 && ret == -EINTR)
        return -EINTR;
    return (int)n;
}

/* liburing 2.3 has no io_uring_setup_buf_ring(): the ring memory must be
 * page aligned and registered by hand (io_uring_register_buf_ring(3)). */
int uio_bufring_setup(struct io_uring *ring, struct uio_bufring *br,
                      unsigned entries, unsigned size, int bgid)
{
    struct io_uring_buf_reg reg;
    long page = sysconf(_SC_PAGESIZE);
    void *mem = NULL;
    unsigned i;
    int ret;

    memset(br, 0, sizeof(*br));
    if (entries == 0 || (entries & (entries - 1)) || entries > 32768)
        return -EINVAL;
    if (posix_memalign(&mem, page, entries * sizeof(struct io_uring_buf)))
        return -ENOMEM;
    br->br = mem;
    if (posix_memalign(&mem, page, (size_t)entries * size)) {
        free(br->br);
        br->br = NULL;
        return -ENOMEM;
    }
    br->base = mem;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)br->br;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret) {
        free(br->br);
        free(br->base);
        memset(br, 0, sizeof(*br));
        return ret;
    }
    br->entries = entries;
    br->size = size;
    br->bgid = bgid;
    br->mask = io_uring_buf_ring_mask(entries);
    io_uring_buf_ring_init(br->br);
    for (i = 0; i < entries; i++)
        io_uring_buf_ring_add(br->br, br->base + (size_t)i * size, size, i,
                              br->mask, i);
    io_uring_buf_ring_advance(br->br, entries);
    return 0;
}

void uio_bufring_free(struct io_uring *ring, struct uio_bufring *br)
{
    if (br->br == NULL)
        return;
    if (ring)
        io_uring_unregister_buf_ring(ring, br->bgid);
    free(br->br);
    free(br->base);
    memset(br, 0, sizeof(*br));
}
"""


MIN_LIBURING = (2, 3)


def _liburing_version() -> str:
    """liburing's version as pkg-config reports it; the build needs >= 2.3."""
    try:
        out = subprocess.run(["pkg-config", "--modversion", "liburing"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    parts = tuple(int(x) for x in re.findall(r"\d+", out)[:2])
    if parts and parts < MIN_LIBURING:
        raise SystemExit(f"uringio needs liburing >= 2.3 (found {out}); "
                         "install liburing-dev from Debian 12 or newer")
    return out


def _liburing_static() -> list[str]:
    """Link liburing.a when it is there, so the extension needs no liburing.so."""
    for libdir in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                   "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        path = os.path.join(libdir, "liburing.a")
        if os.path.exists(path):
            return [path]
    return []


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
_static = _liburing_static()
ffibuilder.set_source(
    "uringio._liburing",
    SOURCE,
    extra_objects=_static,
    libraries=[] if _static else ["uring"],
    extra_compile_args=["-O2"],
    define_macros=[("UIO_LIBURING_VERSION", '"%s"' % _liburing_version())],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
