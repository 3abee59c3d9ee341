/*
 * uringio's C helpers around liburing, compiled into uringio._liburing by
 * _build/_core/uring_build.py (cffi API mode; the declarations Python sees are
 * that file's CDEF). Most of liburing is static inline, hence helpers at all;
 * their shapes follow the cost model of Python, where a foreign call costs
 * far more than the C work inside it.
 */
#define _GNU_SOURCE   /* SPLICE_F_NONBLOCK */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/stat.h>
#include <liburing.h>

#include "uring_shared.h"

/* The version and origin of the liburing linked in ("2.15 (vendored)"): setup.py's
 * build_ext passes them, from _build/liburing_build.py. */
const char *uio_liburing_version(void) { return UIO_LIBURING_VERSION; }

struct uio_bufring {
    unsigned entries;
    unsigned size;
    int bgid;
    char *base;
    struct io_uring_buf_ring *br;
    unsigned mask;
    unsigned short *lent;    /* buffer ids reported last turn */
    unsigned nlent;
    unsigned added;          /* buffers put in circulation: ids 0..added-1 */
    int incremental;         /* IOU_PBUF_RING_INC: buffers consumed piece by piece */
    unsigned *consumed;      /* incremental: per buffer id, bytes the kernel has used */
};

/* Linux 6.12's incremental consumption (io_uring_register_buf_ring(3)):
 * each receive takes only what it fills of the buffer at the ring's head,
 * and the next receive, on any socket, goes on in the same buffer. Small
 * messages from many connections then share a few warm buffers instead of
 * touching a page of a different buffer each: less memory, fewer cache
 * misses. A CQE says IORING_CQE_F_BUF_MORE while its buffer has room left;
 * where its bytes start in the buffer is ours to count. Older headers and
 * kernels lack it (the kernel then refuses the flag with EINVAL). */
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

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

/* A recv with a deadline: the recv linked to an IORING_OP_LINK_TIMEOUT
 * (io_uring_prep_link_timeout(3)). If the timeout fires first the recv
 * completes with -ECANCELED; the timeout's own CQE goes to user_data 0.
 * Both SQEs must go in the same submission, so room for two is made first. */
int uio_prep_recv_deadline(struct io_uring *ring, int fd, void *buf, unsigned len,
                           int flags, uint64_t user_data, struct __kernel_timespec *ts)
{
    struct io_uring_sqe *sqe, *tsqe;

    if (io_uring_sq_space_left(ring) < 2)
        io_uring_submit(ring);
    if (io_uring_sq_space_left(ring) < 2)
        return -EBUSY;
    sqe = io_uring_get_sqe(ring);
    tsqe = io_uring_get_sqe(ring);
    io_uring_prep_recv(sqe, fd, buf, len, flags);
    sqe->flags |= IOSQE_IO_LINK;
    sqe->user_data = user_data;
    io_uring_prep_link_timeout(tsqe, ts, 0);
    tsqe->user_data = 0;
    return 0;
}

/* io_uring_prep_poll_add(3): one readiness report, mask POLLIN/POLLOUT. */
int uio_prep_poll_add(struct io_uring *ring, int fd, unsigned mask, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_poll_add(sqe, fd, mask);
    sqe->user_data = user_data;
    return 0;
}

/* io_uring_prep_connect(3): addr is a struct sockaddr of len bytes, the
 * kernel's to read until the CQE. */
int uio_prep_connect(struct io_uring *ring, int fd, const void *addr, unsigned len,
                     uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)addr, len);
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

/* io_uring_prep_splice(3): off -1 means "the fd's own position" (a pipe). */
int uio_prep_splice(struct io_uring *ring, int fd_in, int64_t off_in, int fd_out,
                    int64_t off_out, unsigned nbytes, uint64_t user_data, unsigned sqe_flags)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, nbytes, 0);
    sqe->flags |= sqe_flags;
    sqe->user_data = user_data;
    return 0;
}

/* A splice that waits for readiness first (the relay's step, uringio/_core/uring/relay.py):
 * a poll of poll_fd for mask, which posts no CQE when it succeeds
 * (IOSQE_CQE_SKIP_SUCCESS), linked to a splice of up to nbytes from fd_in to
 * fd_out. io_uring runs every splice in a worker thread, and one that
 * blocked on a socket would hold that thread until the peer acted; after
 * the poll, the splice finds its bytes or room (the sockets are O_NONBLOCK,
 * the pipe side SPLICE_F_NONBLOCK). Both SQEs go in one submission: a link
 * cut by a full SQ would let the splice run without its poll. */
int uio_prep_poll_splice(struct io_uring *ring, int poll_fd, unsigned mask,
                         uint64_t poll_data, int fd_in, int fd_out, unsigned nbytes,
                         uint64_t user_data)
{
    if (io_uring_sq_space_left(ring) < 2) {
        io_uring_submit(ring);
        if (io_uring_sq_space_left(ring) < 2)
            return -EBUSY;
    }
    struct io_uring_sqe *poll = io_uring_get_sqe(ring);
    io_uring_prep_poll_add(poll, poll_fd, mask);
    poll->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
    poll->user_data = poll_data;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_splice(sqe, fd_in, -1, fd_out, -1, nbytes, SPLICE_F_NONBLOCK);
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

/* What the ring itself counts, for the engine's counters (free to read):
 * SQEs ever prepared (the SQ's tail), CQEs ever consumed (the CQ's head),
 * CQEs the kernel could not post at once (overflows). Each wraps at 2^32. */
void uio_ring_counters(struct io_uring *ring, uint32_t out[3])
{
    out[0] = ring->sq.sqe_tail;
    out[1] = IO_URING_READ_ONCE(*ring->cq.khead);
    out[2] = IO_URING_READ_ONCE(*ring->cq.koverflow);
}

/* Cancel the request ``user_data`` names, returning once it has completed
 * (its CQE is still posted, for the next turn to reap): what it held, a
 * listening socket's file, is let go before this returns. -ENOENT: none
 * such in the kernel (its SQE not submitted yet, or done); -EINVAL where
 * the kernel has no synchronous cancel (before 6.0). */
int uio_sync_cancel(struct io_uring *ring, uint64_t user_data)
{
    struct io_uring_sync_cancel_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.addr = user_data;
    reg.timeout.tv_sec = -1;    /* no timeout: a cancelled accept completes at once */
    reg.timeout.tv_nsec = -1;
    int res = io_uring_register_sync_cancel(ring, &reg);
    if (res < 0)
        return res;
    /* With DEFER_TASKRUN the completion's last step (which puts the file)
     * is task work, run when this task next enters the kernel for events:
     * run it now. The CQEs it posts wait in the CQ for the next turn. */
    io_uring_get_events(ring);
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

/* ---- files: each one SQE; paths and buffers are the kernel's until the CQE */

int uio_prep_openat(struct io_uring *ring, int dfd, const char *path, int flags,
                    unsigned mode, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_openat(sqe, dfd, path, flags, mode);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_write(struct io_uring *ring, int fd, const void *buf, unsigned len,
                   uint64_t offset, uint64_t user_data, unsigned sqe_flags)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_write(sqe, fd, buf, len, offset);
    sqe->flags |= sqe_flags;
    sqe->user_data = user_data;
    return 0;
}

/* fsync_flags IORING_FSYNC_DATASYNC: fdatasync. */
int uio_prep_fsync(struct io_uring *ring, int fd, unsigned fsync_flags, uint64_t user_data,
                   unsigned sqe_flags)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_fsync(sqe, fd, fsync_flags);
    sqe->flags |= sqe_flags;
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_statx(struct io_uring *ring, int dfd, const char *path, int flags,
                   unsigned mask, struct statx *buf, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_statx(sqe, dfd, path, flags, mask, buf);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_fallocate(struct io_uring *ring, int fd, int mode, uint64_t offset,
                       uint64_t len, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_fallocate(sqe, fd, mode, offset, len);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_unlinkat(struct io_uring *ring, int dfd, const char *path, int flags,
                      uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_unlinkat(sqe, dfd, path, flags);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_renameat(struct io_uring *ring, int olddfd, const char *oldpath, int newdfd,
                      const char *newpath, unsigned flags, uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_renameat(sqe, olddfd, oldpath, newdfd, newpath, flags);
    sqe->user_data = user_data;
    return 0;
}

int uio_prep_mkdirat(struct io_uring *ring, int dfd, const char *path, unsigned mode,
                     uint64_t user_data)
{
    UIO_SQE(ring, sqe);
    io_uring_prep_mkdirat(sqe, dfd, path, mode);
    sqe->user_data = user_data;
    return 0;
}

int uio_submit(struct io_uring *ring) { return io_uring_submit(ring); }

/* ---- writers: a send stream per socket, kept in C -----------------------
 *
 * A writer has two queues of bytes: `active`, which the kernel is sending
 * from (never touched until the send's CQE), and `pending`, where writes
 * accumulate. A write only appends and marks the writer dirty; the next
 * uio_turn sends each dirty writer's pending bytes as one send (a sendmsg
 * when they are several pieces), and when a send completes the pending
 * bytes written meanwhile go out next: one send per socket per turn, one in
 * flight, short sends continued, all without returning to Python. Python
 * hears from a writer only when it asked to (buffered bytes fell to a
 * level) or when a send failed.
 *
 * A queue is a list of pieces, each either bytes copied into the queue's
 * own buffer (uio_write: small writes, coalesced) or the caller's memory,
 * not copied (uio_write_ref: a large immutable object, kept alive by a
 * reference, its token). A token goes on the released list once its bytes
 * are sent, or once the writer will never send them (it failed, or was
 * released); the released list's holder (fastpath.c's Dispatcher, with the
 * GIL) drops the references, told by a UIO_RELEASED_USER_DATA triple.
 */
enum { UIO_W_FREE, UIO_W_OPEN, UIO_W_RELEASED };

/* Buffers come from per-size pools shared by every writer of a ring, and a
 * writer with nothing to send gives both of its buffers back: an idle
 * connection holds no send buffer at all, while a busy one takes a warm
 * buffer from the pool per send and pays no malloc. Sizes are powers of
 * two from UIO_BUF_MIN; larger ones than the biggest class are freed. */
#define UIO_BUF_MIN 512
#define UIO_BUF_CLASSES 8            /* 512 B .. 64 KiB */
#define UIO_POOL_DEPTH 64            /* spare buffers kept per class */
#define UIO_WRITER_IOV 64            /* pieces one sendmsg takes at most */

struct uio_pool {
    unsigned n;
    char *bufs[UIO_POOL_DEPTH];
};

struct uio_piece_w {         /* a run of bytes to send */
    const char *ext;         /* the caller's memory, or NULL: the queue's buffer */
    size_t off, len;         /* where it starts (in ext, or the buffer), bytes left */
    void *token;             /* what keeps ext alive */
};

struct uio_queue {
    char *buf;               /* copied bytes */
    size_t cap, len;
    struct uio_piece_w *v;   /* the pieces, in order; v[cur..n-1] unsent */
    unsigned n, cur, vcap;
    size_t bytes;            /* unsent bytes in all pieces */
};

struct uio_writer {
    int fd;                  /* a free slot: the next free slot's index */
    unsigned char state, inflight, dirty;   /* dirty: on the dirty list */
    int failed;              /* errno after a failed send, else 0 */
    long long notify_at;     /* report when buffered <= this; -1: off */
    unsigned long long sends;   /* send SQEs made, for diagnostics */
    unsigned long long sent;    /* bytes the kernel took */
    struct uio_queue active, pending;
    struct msghdr *msg;      /* a sendmsg's header and iovecs, allocated on first
                              * need: never moved while the kernel may read it */
};

struct uio_writers {
    struct uio_writer *w;
    unsigned n;              /* slots in use or free-listed */
    unsigned cap;
    int free_head;           /* index of the first free slot, -1: none */
    unsigned inflight;
    uint64_t report_ud;      /* the user_data of every writer's reports */
    int *dirty;              /* writers with bytes to send this turn */
    unsigned ndirty, dirty_cap;
    struct uio_pool pools[UIO_BUF_CLASSES];
    void **released;         /* tokens whose bytes are done with */
    unsigned nreleased, released_cap;
    struct uio_pumps *pumps; /* uring_pumps.c; made with the first pump */
};

struct uio_pumps;
static int uio_pump_complete(struct io_uring *ring, struct uio_writers *ws,
                             const struct io_uring_cqe *cqe, int64_t *out);
static void uio_pumps_destroy(struct uio_pumps *ps);

/* The writers' send buffers of more than the pools' 64 KiB (a 64 KiB HTTP
 * body chunk and its head, queued behind a send in flight) are malloc's
 * and live for one send. With glibc's defaults, each free gave the heap's
 * top back to the kernel (or each malloc was an mmap), and the next send
 * faulted its buffer in again page by page: 40% of the CPU of an ASGI
 * server streaming 1 MiB responses, and half its throughput. The loop
 * keeps what it frees instead, up to 32 MiB above what is in use. */
static void uio_tune_malloc(void)
{
    static int done;
    if (!done) {
        done = 1;
        mallopt(M_MMAP_THRESHOLD, 4 << 20);
        mallopt(M_TRIM_THRESHOLD, 32 << 20);
    }
}

struct uio_writers *uio_writers_new(uint64_t report_ud)
{
    struct uio_writers *ws;
    uio_tune_malloc();
    ws = calloc(1, sizeof(*ws));
    if (ws) {
        ws->free_head = -1;
        ws->report_ud = report_ud;
    }
    return ws;
}

/* The pool class of a buffer of cap bytes, or -1 for none. */
static int uio_buf_class(size_t cap)
{
    int c = 0;
    size_t size = UIO_BUF_MIN;
    while (size < cap && c < UIO_BUF_CLASSES) {
        size <<= 1;
        c++;
    }
    return size == cap && c < UIO_BUF_CLASSES ? c : -1;
}

static char *uio_buf_take(struct uio_writers *ws, size_t cap)
{
    int c = uio_buf_class(cap);
    if (c >= 0 && ws->pools[c].n)
        return ws->pools[c].bufs[--ws->pools[c].n];
    return malloc(cap);
}

static void uio_buf_give(struct uio_writers *ws, char *buf, size_t cap)
{
    int c;
    if (buf == NULL)
        return;
    c = uio_buf_class(cap);
    if (c >= 0 && ws->pools[c].n < UIO_POOL_DEPTH)
        ws->pools[c].bufs[ws->pools[c].n++] = buf;
    else
        free(buf);
}

/* A token's bytes are done with: on the released list. Returns -ENOMEM
 * when the list cannot grow (the reference is then leaked, never dropped
 * early: a leak, not a use after free). */
static int uio_release_token(struct uio_writers *ws, void *token)
{
    if (ws->nreleased == ws->released_cap) {
        unsigned cap = ws->released_cap ? ws->released_cap * 2 : 64;
        void **nr = realloc(ws->released, cap * sizeof(void *));
        if (nr == NULL)
            return -ENOMEM;
        ws->released = nr;
        ws->released_cap = cap;
    }
    ws->released[ws->nreleased++] = token;
    return 0;
}

/* Up to max released tokens into out, taken off the list: their count. */
unsigned uio_writers_take_released(struct uio_writers *ws, void **out, unsigned max)
{
    unsigned n = ws->nreleased < max ? ws->nreleased : max;
    if (n == 0)
        return 0;
    memcpy(out, ws->released + ws->nreleased - n, n * sizeof(void *));
    ws->nreleased -= n;
    return n;
}

/* Empty q: its buffer to the pools, the tokens of its unsent pieces
 * released; the piece array is kept (for the writer's next use). */
static void uio_queue_clear(struct uio_writers *ws, struct uio_queue *q)
{
    unsigned i;
    for (i = q->cur; i < q->n; i++)
        if (q->v[i].token != NULL)
            uio_release_token(ws, q->v[i].token);
    uio_buf_give(ws, q->buf, q->cap);
    q->buf = NULL;
    q->cap = q->len = q->bytes = 0;
    q->n = q->cur = 0;
}

/* The writer has nothing to send: its buffers go back to the pools. */
static void uio_writer_idle(struct uio_writers *ws, struct uio_writer *w)
{
    uio_queue_clear(ws, &w->active);
    uio_queue_clear(ws, &w->pending);
}

void uio_writers_destroy(struct uio_writers *ws)
{
    unsigned i;
    int c;
    if (ws == NULL)
        return;
    for (i = 0; i < ws->n; i++) {
        free(ws->w[i].active.buf);
        free(ws->w[i].active.v);
        free(ws->w[i].pending.buf);
        free(ws->w[i].pending.v);
        free(ws->w[i].msg);
    }
    for (c = 0; c < UIO_BUF_CLASSES; c++)
        while (ws->pools[c].n)
            free(ws->pools[c].bufs[--ws->pools[c].n]);
    free(ws->w);
    free(ws->dirty);
    free(ws->released);   /* (references still on it are leaked with the ring) */
    uio_pumps_destroy(ws->pumps);
    free(ws);
}

unsigned uio_writers_inflight(struct uio_writers *ws) { return ws->inflight; }

int uio_writer_open(struct uio_writers *ws, int fd)
{
    struct uio_writer *w;
    int wid;

    if (ws->free_head >= 0) {
        wid = ws->free_head;
        ws->free_head = ws->w[wid].fd;   /* free slots chain through fd */
    } else {
        if (ws->n == ws->cap) {
            unsigned cap = ws->cap ? ws->cap * 2 : 64;
            struct uio_writer *nw = realloc(ws->w, cap * sizeof(*nw));
            if (nw == NULL)
                return -ENOMEM;
            memset(nw + ws->cap, 0, (cap - ws->cap) * sizeof(*nw));
            ws->w = nw;
            ws->cap = cap;
        }
        wid = ws->n++;
    }
    w = &ws->w[wid];
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->state = UIO_W_OPEN;
    w->notify_at = -1;
    return wid;
}

static void uio_writer_free(struct uio_writers *ws, int wid)
{
    struct uio_writer *w = &ws->w[wid];
    uio_writer_idle(ws, w);
    free(w->active.v);
    free(w->pending.v);
    free(w->msg);
    memset(w, 0, sizeof(*w));
    w->state = UIO_W_FREE;
    w->fd = ws->free_head;
    ws->free_head = wid;
}

/* The caller is done with the writer. A send still in flight keeps its
 * buffer until its CQE (the cancel from close comes first), then it is
 * freed; the pending bytes will never go, and their tokens are released. */
void uio_writer_release(struct uio_writers *ws, int wid)
{
    struct uio_writer *w = &ws->w[wid];
    if (w->inflight) {
        w->state = UIO_W_RELEASED;
        uio_queue_clear(ws, &w->pending);
    } else {
        uio_writer_free(ws, wid);
    }
}

static long long uio_buffered(const struct uio_writer *w)
{
    return (long long)(w->active.bytes + w->pending.bytes);
}

long long uio_writer_buffered(struct uio_writers *ws, int wid)
{
    return uio_buffered(&ws->w[wid]);
}

unsigned long long uio_writer_sends(struct uio_writers *ws, int wid)
{
    return ws->w[wid].sends;
}

unsigned long long uio_writer_sent(struct uio_writers *ws, int wid)
{
    return ws->w[wid].sent;
}

/* Bytes of buffer the writer holds: 0 whenever it has nothing to send. */
unsigned long long uio_writer_held(struct uio_writers *ws, int wid)
{
    return ws->w[wid].active.cap + ws->w[wid].pending.cap;
}

/* Room for one more piece in q. */
static int uio_queue_piece_room(struct uio_queue *q)
{
    if (q->n == q->vcap) {
        unsigned cap = q->vcap ? q->vcap * 2 : 4;
        struct uio_piece_w *nv = realloc(q->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        q->v = nv;
        q->vcap = cap;
    }
    return 0;
}

/* Make room for need bytes in q's buffer, keeping its contents. */
static int uio_queue_room(struct uio_writers *ws, struct uio_queue *q, size_t need)
{
    size_t ncap;
    char *nbuf;
    if (need <= q->cap)
        return 0;
    ncap = q->cap ? q->cap : UIO_BUF_MIN;
    while (ncap < need)
        ncap *= 2;
    nbuf = uio_buf_take(ws, ncap);
    if (nbuf == NULL)
        return -ENOMEM;
    if (q->len)
        memcpy(nbuf, q->buf, q->len);
    uio_buf_give(ws, q->buf, q->cap);
    q->buf = nbuf;
    q->cap = ncap;
    return 0;
}

static const char *uio_piece_data(const struct uio_queue *q, const struct uio_piece_w *p)
{
    return (p->ext != NULL ? p->ext : q->buf) + p->off;
}

/* Send the active queue's unsent pieces (as many as one sendmsg takes). */
static int uio_writer_submit(struct io_uring *ring, struct uio_writers *ws, int wid)
{
    struct uio_writer *w = &ws->w[wid];
    struct uio_queue *q = &w->active;
    unsigned n = q->n - q->cur, i;
    struct io_uring_sqe *sqe;

    if (n > UIO_WRITER_IOV)
        n = UIO_WRITER_IOV;
    if (n > 1 && w->msg == NULL &&
            (w->msg = malloc(sizeof(struct msghdr) + UIO_WRITER_IOV * sizeof(struct iovec))) == NULL)
        return -ENOMEM;
    if ((sqe = uio_sqe(ring)) == NULL)
        return -EBUSY;
    if (n == 1) {
        const struct uio_piece_w *p = &q->v[q->cur];
        io_uring_prep_send(sqe, w->fd, uio_piece_data(q, p), p->len, MSG_NOSIGNAL);
    } else {
        struct iovec *iov = (struct iovec *)(w->msg + 1);
        for (i = 0; i < n; i++) {
            const struct uio_piece_w *p = &q->v[q->cur + i];
            iov[i].iov_base = (void *)uio_piece_data(q, p);
            iov[i].iov_len = p->len;
        }
        memset(w->msg, 0, sizeof(*w->msg));
        w->msg->msg_iov = iov;
        w->msg->msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, w->fd, w->msg, MSG_NOSIGNAL);
    }
    sqe->user_data = UIO_WRITER_TAG | (uint64_t)wid;
    w->sends++;
    if (!w->inflight) {
        w->inflight = 1;
        ws->inflight++;
    }
    return 0;
}

/* Swap the pending bytes into `active` and send them. */
static int uio_writer_flush(struct io_uring *ring, struct uio_writers *ws, int wid)
{
    struct uio_writer *w = &ws->w[wid];
    struct uio_queue tmp = w->active;   /* (empty: sent, its buffer given back) */
    w->active = w->pending;
    w->pending = tmp;
    int ret = uio_writer_submit(ring, ws, wid);
    if (ret < 0) {
        /* No SQE (the SQ full, the kernel taking none: -EBUSY): swap back,
         * the bytes pending again for the next turn's flush. Left in
         * `active` with no send, the next write's flush would swap them out
         * as an empty buffer: bytes lost from the middle of the stream
         * (found by fuzz/writers.c). */
        tmp = w->pending;
        w->pending = w->active;
        w->active = tmp;
    }
    return ret;
}

static int uio_writer_mark_dirty(struct uio_writers *ws, int wid)
{
    struct uio_writer *w = &ws->w[wid];
    if (!w->inflight && !w->dirty) {
        if (ws->ndirty == ws->dirty_cap) {
            unsigned cap = ws->dirty_cap ? ws->dirty_cap * 2 : 64;
            int *nd = realloc(ws->dirty, cap * sizeof(int));
            if (nd == NULL)
                return -ENOMEM;
            ws->dirty = nd;
            ws->dirty_cap = cap;
        }
        ws->dirty[ws->ndirty++] = wid;
        w->dirty = 1;
    }
    return 0;
}

/* Queue len bytes, copied, to go out with this turn's submit; returns the
 * bytes buffered (not yet sent), or -errno of the send that failed earlier.
 * (Through uio_writer_api: _fastpath's Writer calls it.) */
long long uio_write(struct uio_writers *ws, int wid, const char *data, size_t len)
{
    struct uio_writer *w = &ws->w[wid];
    struct uio_queue *q = &w->pending;
    struct uio_piece_w *last = q->n ? &q->v[q->n - 1] : NULL;

    if (w->failed)
        return -w->failed;
    if (len == 0)
        return uio_buffered(w);
    if (uio_queue_room(ws, q, q->len + len))
        return -ENOMEM;
    if (last == NULL || last->ext != NULL || last->off + last->len != q->len) {
        if (uio_queue_piece_room(q))
            return -ENOMEM;
        q->v[q->n++] = (struct uio_piece_w){NULL, q->len, 0, NULL};
        last = &q->v[q->n - 1];
    }
    memcpy(q->buf + q->len, data, len);
    q->len += len;
    last->len += len;
    q->bytes += len;
    if (uio_writer_mark_dirty(ws, wid))
        return -ENOMEM;
    return uio_buffered(w);
}

/* Queue len bytes of the caller's memory, not copied: token keeps it
 * alive, and is released once the bytes are sent or will never be (see
 * above). Returns as uio_write; on any return < 0 the token was not taken. */
long long uio_write_ref(struct uio_writers *ws, int wid, const char *data, size_t len,
                        void *token)
{
    struct uio_writer *w = &ws->w[wid];
    struct uio_queue *q = &w->pending;

    if (w->failed)
        return -w->failed;
    if (len == 0)
        return uio_buffered(w);
    if (uio_queue_piece_room(q) || uio_writer_mark_dirty(ws, wid))
        return -ENOMEM;
    q->v[q->n++] = (struct uio_piece_w){data, 0, len, token};
    q->bytes += len;
    return uio_buffered(w);
}

/* Before each submit: one send for every writer written to this turn. */
static void uio_writers_flush(struct io_uring *ring, struct uio_writers *ws)
{
    unsigned i, kept = 0;
    for (i = 0; i < ws->ndirty; i++) {
        int wid = ws->dirty[i];
        struct uio_writer *w = &ws->w[wid];
        if (!w->dirty)
            continue;
        w->dirty = 0;
        if (w->state == UIO_W_OPEN && !w->inflight && w->pending.bytes && !w->failed &&
                uio_writer_flush(ring, ws, wid) < 0) {
            w->dirty = 1;   /* no SQE this turn: flushed on the next */
            ws->dirty[kept++] = wid;
        }
    }
    ws->ndirty = kept;
}

/* Ask for a report once buffered <= level. Returns 1 when that is already
 * so (no report will come), 0 when armed. */
int uio_writer_notify(struct uio_writers *ws, int wid, long long level)
{
    struct uio_writer *w = &ws->w[wid];
    if (uio_buffered(w) <= level) {
        w->notify_at = -1;
        return 1;
    }
    w->notify_at = level;
    return 0;
}

/* A report for Python: one UIO_CQE_WORDS triple for the writers' report
 * user_data, the writer's id in the flags. */
static int uio_writer_report(struct uio_writers *ws, int wid, long long res, uint32_t level,
                             int64_t *out)
{
    out[0] = (int64_t)ws->report_ud;
    out[1] = res;
    out[2] = level | (uint32_t)wid;
    return 1;
}

/* The kernel took res bytes of the active queue: its pieces advance, those
 * all sent release their tokens. */
static void uio_queue_sent(struct uio_writers *ws, struct uio_queue *q, size_t res)
{
    q->bytes -= res;
    while (res) {
        struct uio_piece_w *p = &q->v[q->cur];
        size_t n = res < p->len ? res : p->len;
        p->off += n;
        p->len -= n;
        res -= n;
        if (p->len == 0) {
            if (p->token != NULL)
                uio_release_token(ws, p->token);
            q->cur++;
        }
    }
}

/* A writer's send completed. Returns 1 when a report for Python was written
 * to out, else 0. */
static int uio_writer_complete(struct io_uring *ring, struct uio_writers *ws,
                               const struct io_uring_cqe *cqe, int64_t *out)
{
    int wid = (int)(cqe->user_data & 0xffffffffULL);
    struct uio_writer *w = &ws->w[wid];
    int res = cqe->res;

    w->inflight = 0;
    ws->inflight--;
    if (w->state != UIO_W_OPEN) {
        uio_writer_free(ws, wid);
        return 0;
    }
    if (res > 0 && (size_t)res > w->active.bytes)
        res = -EIO;   /* more than was asked: never from a real kernel */
    if (res > 0) {
        w->sent += (unsigned long long)res;
        uio_queue_sent(ws, &w->active, (size_t)res);
        if (w->active.bytes) {     /* short send, or more pieces: continue */
            if (uio_writer_submit(ring, ws, wid) == 0)
                return 0;
            res = -EBUSY;
        } else if (w->pending.bytes) {
            uio_queue_clear(ws, &w->active);
            if (uio_writer_flush(ring, ws, wid))   /* what was written meanwhile */
                res = -EBUSY;
        } else {
            uio_writer_idle(ws, w);
        }
    } else if (res == 0) {
        res = -EPIPE;   /* a stream socket that takes nothing is broken */
    }
    if (res < 0) {
        w->failed = -res;
        uio_writer_idle(ws, w);
        return uio_writer_report(ws, wid, res, 0, out);
    }
    if (w->notify_at >= 0 && uio_buffered(w) <= w->notify_at) {
        w->notify_at = -1;
        return uio_writer_report(ws, wid, uio_buffered(w), UIO_WRITER_LEVEL, out);
    }
    return 0;
}

/* What _fastpath reaches the writers through (uring_shared.h). */
static const struct uio_writer_api uio_writer_api = {
    uio_write, uio_write_ref, uio_writers_take_released,
};

const void *uio_writer_api_address(void) { return &uio_writer_api; }

/* The pace at which uio_turn hands out completions of file reads.
 *
 * Discussion: reads from a disk do not complete one by one. The device
 * (here a Firecracker virtio-blk, but any that batches) answers the reads
 * in flight in clumps: 64 reads submitted together come back within some
 * tens of microseconds of each other, ~600 us later. A turn that takes the
 * whole clump hands all of it to Python, which resolves each future and
 * runs each reader, preparing the next read; those SQEs reach the kernel
 * only at the next turn, so the first read of the clump is resubmitted
 * only once the last one has been handled (~2.5 us of Python each: ~160 us
 * for 64). The device sits that long with fewer reads than the caller
 * asked for, and a convoy forms: 0.82x fio's io_uring engine at 64 in
 * flight. fio (3.33) sets the ring up as we do (SINGLE_ISSUER |
 * DEFER_TASKRUN, and COOP_TASKRUN) but resubmits each read as soon as it
 * has reaped it, one io_uring_enter(to_submit 1, min_complete 0) per read
 * (strace), so its device never waits for the end of a clump. Handing the
 * clump out `chunk` CQEs per turn does the same for us: each turn's
 * io_uring_enter submits the reads the last chunk's readers made, while
 * the rest of the clump waits in the CQ (0.95-0.99x fio with chunk 2,
 * 0.95x with 8). It costs a turn per chunk, so it is done only after a
 * sleep: a loop that never sleeps (page-cache reads,
 * completed inline as they are submitted; a CPU-bound loop) takes
 * everything at once as before, and nothing here ever spins.
 * (Measured, and no help: spinning up to 200 us before sleeping, since
 * the gap between clumps is longer; COOP_TASKRUN instead of DEFER_TASKRUN.
 * Waiting for 8 with IORING_FEAT_MIN_TIMEOUT's 50 us min_wait: 0.90x.) */
struct uio_pace {
    unsigned chunk;              /* CQEs per turn while a clump lasts; 0: all */
    unsigned left;               /* CQEs of the clump not handed out yet */
    unsigned long long clumps;   /* sleeps that began one (tests, diagnostics) */
};

/* Submit what is queued and wait for wait_nr CQEs, at most timeout_ns
 * (< 0: no limit). */
static int uio_wait(struct io_uring *ring, unsigned wait_nr, long long timeout_ns)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts;
    int ret;

    if (timeout_ns < 0)
        return io_uring_submit_and_wait(ring, wait_nr);
    ts.tv_sec = timeout_ns / 1000000000LL;
    ts.tv_nsec = timeout_ns % 1000000000LL;
    ret = io_uring_submit_and_wait_timeout(ring, &cqe, wait_nr, &ts, NULL);
    return ret == -ETIME ? 0 : ret;
}

/* One loop turn in one foreign call:
 *   1. hand the buffers reported last turn back to the buffer ring: Python
 *      copies the bytes out while it handles a CQE, so by now they are free,
 *   2. submit the SQ and wait for wait_nr CQEs, at most timeout_ns
 *      (< 0: no limit; wait_nr 0: just run task work and look),
 *   3. settle writer sends in C, and copy up to max other CQEs (and writer
 *      reports) into out as (user_data, res, flags), advancing the CQ.
 * clump: how many operations in flight complete in clumps (the loop's file
 * reads; 0: none). When the turn has to sleep for them, what wakes it is
 * handed out pace->chunk CQEs per turn until clump CQEs have gone out
 * (struct uio_pace says why); pace may be NULL when clump is 0.
 * Returns the number of triples, or -errno from the wait (-EINTR when a
 * signal arrived: the caller runs its handlers and calls again). -ETIME is
 * not an error here: it is the timeout. */
int uio_turn(struct io_uring *ring, struct uio_bufring *br, struct uio_writers *ws,
             unsigned wait_nr, long long timeout_ns, struct uio_pace *pace,
             unsigned clump, int64_t *out, unsigned max)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0, seen = 0, i;
    int ret;

    if (br != NULL && br->nlent) {
        for (i = 0; i < br->nlent; i++)
            io_uring_buf_ring_add(br->br, br->base + (size_t)br->lent[i] * br->size,
                                  br->size, br->lent[i], br->mask, i);
        io_uring_buf_ring_advance(br->br, br->nlent);
        br->nlent = 0;
    }
    if (ws != NULL && ws->ndirty)
        uio_writers_flush(ring, ws);

    if (clump == 0) {
        if (pace != NULL)
            pace->left = 0;
        ret = wait_nr == 0 ? io_uring_submit_and_get_events(ring)
                           : uio_wait(ring, wait_nr, timeout_ns);
    } else {
        /* Look first (submitting, and running the completion work that
         * DEFER_TASKRUN keeps for us); only if nothing is there, sleep --
         * and what wakes us is a clump. One more io_uring_enter, only on
         * turns that sleep anyway. */
        ret = io_uring_submit_and_get_events(ring);
        if (wait_nr > 0 && ret >= 0 && !io_uring_cq_ready(ring)) {
            pace->left = clump;
            pace->clumps++;
            ret = uio_wait(ring, wait_nr, timeout_ns);
        }
        if (pace->left && pace->chunk && pace->chunk < max)
            max = pace->chunk;
    }
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return ret;

    io_uring_for_each_cqe(ring, head, cqe) {
        if (n == max)
            break;
        seen++;
        if (cqe->user_data & UIO_WRITER_TAG) {
            if (ws == NULL)
                continue;
            if (cqe->user_data & UIO_PUMP_TAG)
                n += uio_pump_complete(ring, ws, cqe, out + UIO_CQE_WORDS * n);
            else
                n += uio_writer_complete(ring, ws, cqe, out + UIO_CQE_WORDS * n);
            continue;
        }
        out[UIO_CQE_WORDS * n + 2] = cqe->flags;
        if (br != NULL && (cqe->flags & IORING_CQE_F_BUFFER)) {
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            int done = 1;
            if (br->incremental && bid < br->entries) {
                /* The bytes start where the last piece of this buffer ended;
                 * it goes back to the ring only once the kernel is done with it. */
                out[UIO_CQE_WORDS * n + 2] |= (int64_t)br->consumed[bid] << UIO_CQE_OFFSET_SHIFT;
                done = !(cqe->flags & IORING_CQE_F_BUF_MORE);
                br->consumed[bid] = done ? 0 : br->consumed[bid] + (cqe->res > 0 ? cqe->res : 0);
            }
            if (done && br->nlent < br->entries)
                br->lent[br->nlent++] = (unsigned short)bid;
        }
        out[UIO_CQE_WORDS * n] = (int64_t)cqe->user_data;
        out[UIO_CQE_WORDS * n + 1] = cqe->res;
        n++;
    }
    io_uring_cq_advance(ring, seen);
    if (ws != NULL && ws->nreleased && n < max) {
        /* References to drop: the Dispatcher does, with the GIL. */
        out[UIO_CQE_WORDS * n] = (int64_t)UIO_RELEASED_USER_DATA;
        out[UIO_CQE_WORDS * n + 1] = (int64_t)ws->nreleased;
        out[UIO_CQE_WORDS * n + 2] = 0;
        n++;
    }
    if (clump)
        pace->left = pace->left > n ? pace->left - n : 0;
    if (n == 0 && seen == 0 && ret == -EINTR)
        return -EINTR;
    return (int)n;
}

/* liburing 2.3 has no io_uring_setup_buf_ring(): the ring memory must be
 * page aligned and registered by hand (io_uring_register_buf_ring(3)). */
unsigned uio_bufring_grow(struct uio_bufring *br, unsigned n);

int uio_bufring_setup(struct io_uring *ring, struct uio_bufring *br,
                      unsigned entries, unsigned size, int bgid, unsigned initial,
                      int incremental)
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
    br->lent = calloc(entries, sizeof(unsigned short));
    br->consumed = calloc(entries, sizeof(unsigned));
    if (br->lent == NULL || br->consumed == NULL) {
        free(br->br);
        free(br->base);
        free(br->lent);
        free(br->consumed);
        memset(br, 0, sizeof(*br));
        return -ENOMEM;
    }
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)br->br;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    reg.flags = incremental ? IOU_PBUF_RING_INC : 0;
    ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret == -EINVAL && incremental) {   /* a kernel before 6.12 */
        reg.flags = 0;
        incremental = 0;
        ret = io_uring_register_buf_ring(ring, &reg, 0);
    }
    if (ret) {
        free(br->br);
        free(br->base);
        free(br->lent);
        free(br->consumed);
        memset(br, 0, sizeof(*br));
        return ret;
    }
    br->incremental = incremental;
    br->entries = entries;
    br->size = size;
    br->bgid = bgid;
    br->mask = io_uring_buf_ring_mask(entries);
    io_uring_buf_ring_init(br->br);
    uio_bufring_grow(br, initial < entries ? initial : entries);
    return 0;
}

/* Put up to n more buffers in circulation; returns how many were added.
 *
 * Why not all at once: the ring is a FIFO, so the kernel cycles through
 * every buffer in it, and with all of them in, a few busy connections
 * touch entries * size bytes of memory (16 MiB by default) instead of a
 * few cache-warm buffers -- a 16 KiB echo spent twice as long in the
 * kernel's copy to user memory. The loop starts small and grows the set
 * when the ring runs dry (-ENOBUFS). */
unsigned uio_bufring_grow(struct uio_bufring *br, unsigned n)
{
    unsigned i, tail = 0;
    if (n > br->entries - br->added)
        n = br->entries - br->added;
    for (i = 0; i < n; i++, tail++)
        io_uring_buf_ring_add(br->br, br->base + (size_t)(br->added + i) * br->size,
                              br->size, br->added + i, br->mask, tail);
    io_uring_buf_ring_advance(br->br, n);
    br->added += n;
    return n;
}

void uio_bufring_free(struct io_uring *ring, struct uio_bufring *br)
{
    if (br->br == NULL)
        return;
    if (ring)
        io_uring_unregister_buf_ring(ring, br->bgid);
    free(br->br);
    free(br->base);
    free(br->lent);
    free(br->consumed);
    memset(br, 0, sizeof(*br));
}

/* The pumps (relays in C over their own buffer ring) use the SQE helper and
 * the writers' table above: one translation unit. */
#include "uring_pumps.c"
