/*
 * Pumps: one direction of a relay, socket to socket, in C and in the
 * kernel's buffers -- the bulk data path (compiled with uring_helpers.c into
 * uringio._core._liburing, after it: it uses its SQE helper and its tables).
 *
 * A pump receives from `src` into a buffer the kernel picks from the pump
 * buffer ring (a provided-buffer ring of its own, with large buffers), and
 * sends to `dst` straight from that buffer; the buffer goes back to the
 * ring when the send has taken all of it. No byte is copied in user
 * memory, and no Python runs per chunk: uio_turn settles every pump CQE
 * here, like the writers' sends. Python hears a pump once, when it ends.
 *
 * Lifecycle of a pump, and its states:
 *
 *   RUNNING   a multishot recv armed on src while the pump holds less
 *             than UIO_PUMP_HOLD buffers' worth of bytes (received, not
 *             yet all sent), and no EOF came; past that the recv is
 *             cancelled ("stopping") and armed again once sends have
 *             made room. A send in flight while a piece is held, one at a
 *             time (two sends on one TCP socket could be reordered),
 *             taking every piece held, up to UIO_PUMP_IOV, in one sendmsg:
 *             many small messages received in one turn go out in one send.
 *   ENDING    an error on either side, or uio_pump_cancel: what is in
 *             flight is cancelled, and the pump waits for its CQEs.
 *   ENDED     nothing in flight, every held buffer back in the ring, the
 *             report written: res 0 (src's EOF, every byte sent) or
 *             -errno, flags UIO_PUMP_REPORT | pump id. Python reads the
 *             byte count (uio_pump_total) and releases the pump.
 *   FREE      a free slot.
 *
 * A pump stops receiving at UIO_PUMP_HOLD buffers' worth of bytes held
 * or UIO_PUMP_PIECES pieces, whichever comes first, so a slow dst holds
 * about that much (and what the kernel received before the stop
 * took effect: with DEFER_TASKRUN, only what was already in the CQ). A
 * recv that finds the ring empty (-ENOBUFS) grows it, up to its most, or
 * waits on the starved list and is re-armed, first come first served, as
 * buffers come back.
 *
 * Why a multishot recv: one SQE for the pump's life while it keeps up, and
 * no poll armed in the kernel per message -- a single-shot recv per
 * message cost a proxy of 64-byte messages a quarter of its rate.
 */

#define UIO_PUMP_HOLD 2      /* buffers' worth of bytes held before it stops */
#define UIO_PUMP_PIECES 64   /* or pieces (without incremental buffers, each holds one) */
#define UIO_PUMP_IOV 64      /* pieces one sendmsg takes at most */

enum { UIO_P_FREE, UIO_P_RUNNING, UIO_P_ENDING, UIO_P_ENDED };

struct uio_piece {
    unsigned short bid;
    unsigned off, len;       /* what is still to send in buffer bid */
};

struct uio_pump {
    int src, dst;            /* a free slot: src is the next free slot's id */
    unsigned char state, recving, stopping, sending, eof;
    unsigned char dst_full;  /* the last send found no room (-EAGAIN) */
    int error;               /* the errno that ends the pump, 0: none */
    struct uio_piece *q;     /* the held pieces, a ring: q[head], q[(head + 1) % qcap], ... */
    unsigned head, npieces, qcap;
    unsigned long long held; /* bytes in the held pieces */
    unsigned long long total;   /* bytes dst took */
    struct msghdr msg;       /* the send in flight's, when it has several pieces */
    struct iovec iov[UIO_PUMP_IOV];
};

struct uio_pumps {
    struct uio_pump **p;     /* by id; each allocated once, so that msg and
                              * iov stay put while the kernel may read them */
    unsigned n, cap;
    int free_head;
    struct uio_pump_pool *pool;   /* the pumps' buffers, NULL until set up */
    int *starved;            /* FIFO of pump ids whose recv found no buffer */
    unsigned nstarved, starved_cap;
};

/* The user_data of a pump's SQEs: UIO_WRITER_TAG (settled in C) |
 * UIO_PUMP_TAG | the op | pump id (uring_shared.h). */
#define UIO_PUMP_RECV 0ULL
#define UIO_PUMP_SEND (1ULL << 32)
#define UIO_PUMP_CANCEL (2ULL << 32)
#define UIO_PUMP_UD(op, id) (UIO_WRITER_TAG | UIO_PUMP_TAG | (op) | (uint64_t)(id))

static struct uio_pumps *uio_pumps_of(struct uio_writers *ws);

/* The pumps' buffers: a provided-buffer ring of up to `max` buffers of
 * `size` bytes, each allocated when the ring first grows to it (not one
 * block: the kernel takes any address per buffer). It starts with
 * UIO_POOL_FIRST and doubles when a recv finds it empty, up to max:
 * memory follows what the pumps hold, as a per-connection buffer would,
 * and few buffers in circulation stay warm in cache.
 *
 * Consumed incrementally where the kernel can (IOU_PBUF_RING_INC, 6.12):
 * a recv takes only what it fills of the buffer at the ring's head, and
 * the next, on any pump's socket, goes on in the same one -- a thousand
 * 64-byte messages share one buffer instead of taking a buffer (and
 * touching a page) each, and bulk still fills whole ones. So a buffer may
 * hold pieces of several pumps: it goes back to the ring once the kernel
 * is done with it (a CQE without IORING_CQE_F_BUF_MORE) and every piece
 * in it is sent (`refs`). */
#define UIO_POOL_FIRST 4

struct uio_pump_pool {
    struct io_uring_buf_ring *br;
    char **bufs;             /* by buffer id; bufs[0 .. added-1] allocated */
    unsigned *used;          /* by buffer id: bytes the kernel has filled (incremental) */
    unsigned *refs;          /* by buffer id: pieces not yet sent, +1 while the kernel has it */
    unsigned max, added, held, size, mask;   /* held: out of the ring */
    int bgid, incremental;
};

static unsigned uio_pool_grow(struct uio_pump_pool *pool, unsigned n)
{
    unsigned i = 0;
    if (n > pool->max - pool->added)
        n = pool->max - pool->added;
    for (; i < n; i++) {
        void *buf;
        if (posix_memalign(&buf, 4096, pool->size))
            break;
        pool->bufs[pool->added + i] = buf;
        pool->refs[pool->added + i] = 1;   /* the kernel's */
        io_uring_buf_ring_add(pool->br, buf, pool->size, pool->added + i, pool->mask, i);
    }
    io_uring_buf_ring_advance(pool->br, i);
    pool->added += i;
    return i;
}

/* Free pool and its buffers (NULL: nothing); the kernel must be done with them. */
static void uio_pool_free(struct uio_pump_pool *pool)
{
    unsigned i;
    if (pool == NULL)
        return;
    for (i = 0; i < pool->added; i++)
        free(pool->bufs[i]);
    free(pool->bufs);
    free(pool->used);
    free(pool->refs);
    free(pool->br);
    free(pool);
}

int uio_pumps_setup(struct io_uring *ring, struct uio_writers *ws, int bgid, unsigned max,
                    unsigned size)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    struct uio_pump_pool *pool;
    struct io_uring_buf_reg reg;
    void *mem = NULL;
    int ret;

    if (ps == NULL)
        return -ENOMEM;
    if (ps->pool != NULL)
        return -EEXIST;
    if (max == 0 || (max & (max - 1)) || max > 32768 || size == 0)
        return -EINVAL;
    if ((pool = calloc(1, sizeof(*pool))) == NULL ||
            (pool->bufs = calloc(max, sizeof(char *))) == NULL ||
            (pool->used = calloc(max, sizeof(unsigned))) == NULL ||
            (pool->refs = calloc(max, sizeof(unsigned))) == NULL ||
            posix_memalign(&mem, 4096, max * sizeof(struct io_uring_buf))) {
        uio_pool_free(pool);
        return -ENOMEM;
    }
    pool->br = mem;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)pool->br;
    reg.ring_entries = max;
    reg.bgid = bgid;
    reg.flags = IOU_PBUF_RING_INC;
    pool->incremental = 1;
    if ((ret = io_uring_register_buf_ring(ring, &reg, 0)) == -EINVAL) {
        reg.flags = 0;   /* a kernel before 6.12: a buffer per recv */
        pool->incremental = 0;
        ret = io_uring_register_buf_ring(ring, &reg, 0);
    }
    if (ret) {
        uio_pool_free(pool);   /* (no buffer allocated yet) */
        return ret;
    }
    pool->max = max;
    pool->size = size;
    pool->bgid = bgid;
    pool->mask = io_uring_buf_ring_mask(max);
    io_uring_buf_ring_init(pool->br);
    uio_pool_grow(pool, UIO_POOL_FIRST);
    ps->pool = pool;
    return 0;
}

/* Buffers allocated, and held by pumps now (diagnostics and tests). */
unsigned uio_pumps_buffers(struct uio_writers *ws, int held)
{
    struct uio_pump_pool *pool = ws->pumps ? ws->pumps->pool : NULL;
    return pool == NULL ? 0 : held ? pool->held : pool->added;
}

/* Only once nothing is in flight: the kernel may write any buffer till then. */
void uio_pumps_teardown(struct io_uring *ring, struct uio_writers *ws)
{
    struct uio_pump_pool *pool = ws->pumps ? ws->pumps->pool : NULL;
    if (pool == NULL)
        return;
    if (ring != NULL)
        io_uring_unregister_buf_ring(ring, pool->bgid);
    uio_pool_free(pool);
    ws->pumps->pool = NULL;
}

static int uio_pump_recv(struct io_uring *ring, struct uio_writers *ws, int id);
void uio_pump_release(struct uio_writers *ws, int id);

/* A pump from socket src to socket dst, its first recv prepared: its id,
 * or -errno. */
int uio_pump_open(struct io_uring *ring, struct uio_writers *ws, int src, int dst)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    struct uio_pump *p;
    int id;

    if (ps == NULL)
        return -ENOMEM;
    if (ps->pool == NULL)
        return -EINVAL;   /* uio_pumps_setup first */
    if (ps->free_head >= 0) {
        id = ps->free_head;
        ps->free_head = ps->p[id]->src;
    } else {
        if (ps->n == ps->cap) {
            unsigned cap = ps->cap ? ps->cap * 2 : 16;
            struct uio_pump **np = realloc(ps->p, cap * sizeof(*np));
            if (np == NULL)
                return -ENOMEM;
            ps->p = np;
            ps->cap = cap;
        }
        if ((ps->p[ps->n] = calloc(1, sizeof(struct uio_pump))) == NULL)
            return -ENOMEM;
        id = ps->n++;
    }
    p = ps->p[id];
    memset(p, 0, sizeof(*p));
    p->src = src;
    p->dst = dst;
    p->state = UIO_P_RUNNING;
    if (uio_pump_recv(ring, ws, id) < 0) {
        p->state = UIO_P_ENDED;
        uio_pump_release(ws, id);
        return -EBUSY;
    }
    return id;
}

/* One reference to buffer bid dropped (a piece sent, or the kernel done
 * with it); the last puts it back in the ring. */
static void uio_pump_give_back(struct uio_pumps *ps, unsigned short bid)
{
    struct uio_pump_pool *pool = ps->pool;
    if (--pool->refs[bid])
        return;
    pool->refs[bid] = 1;   /* the kernel's, again */
    pool->used[bid] = 0;
    io_uring_buf_ring_add(pool->br, pool->bufs[bid], pool->size, bid, pool->mask, 0);
    io_uring_buf_ring_advance(pool->br, 1);
    pool->held--;
}

/* Whether the pump holds enough that it must stop receiving: bytes for
 * bulk, pieces for small messages, each of which holds a whole buffer
 * (without the second, a slow reader of small messages could hold them
 * all). */
static int uio_pump_full(struct uio_pumps *ps, struct uio_pump *p)
{
    return p->held >= (unsigned long long)UIO_PUMP_HOLD * ps->pool->size
        || p->npieces >= UIO_PUMP_PIECES;
}

static int uio_pump_recv(struct io_uring *ring, struct uio_writers *ws, int id)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    struct uio_pump *p = ps->p[id];
    struct io_uring_sqe *sqe;
    if (p->state != UIO_P_RUNNING || p->recving || p->eof || uio_pump_full(ps, p))
        return 0;
    if ((sqe = uio_sqe(ring)) == NULL)
        return -EBUSY;
    io_uring_prep_recv_multishot(sqe, p->src, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = ps->pool->bgid;
    sqe->user_data = UIO_PUMP_UD(UIO_PUMP_RECV, id);
    p->recving = 1;
    ws->inflight++;
    return 0;
}

/* Cancel op of pump id (its CQE says what became of it; the cancel's own
 * posts nothing unless it found nothing). */
static void uio_pump_cancel_op(struct io_uring *ring, int id, uint64_t op)
{
    struct io_uring_sqe *sqe = uio_sqe(ring);
    if (sqe == NULL)
        return;   /* (the op still ends, with its socket's close) */
    io_uring_prep_cancel64(sqe, UIO_PUMP_UD(op, id), 0);
    sqe->user_data = UIO_PUMP_UD(UIO_PUMP_CANCEL, id);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

static int uio_pump_send(struct io_uring *ring, struct uio_writers *ws, int id)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    struct uio_pump *p = ps->p[id];
    struct io_uring_sqe *sqe;
    unsigned i, n = p->npieces < UIO_PUMP_IOV ? p->npieces : UIO_PUMP_IOV;
    if (p->state != UIO_P_RUNNING || p->sending || p->npieces == 0)
        return 0;
    if ((sqe = uio_sqe(ring)) == NULL)
        return -EBUSY;
    if (n == 1) {
        struct uio_piece *piece = &p->q[p->head];
        io_uring_prep_send(sqe, p->dst, ps->pool->bufs[piece->bid] + piece->off, piece->len,
                           MSG_NOSIGNAL);
    } else {
        for (i = 0; i < n; i++) {
            struct uio_piece *piece = &p->q[(p->head + i) % p->qcap];
            p->iov[i].iov_base = ps->pool->bufs[piece->bid] + piece->off;
            p->iov[i].iov_len = piece->len;
        }
        memset(&p->msg, 0, sizeof(p->msg));
        p->msg.msg_iov = p->iov;
        p->msg.msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, p->dst, &p->msg, MSG_NOSIGNAL);
    }
    if (p->dst_full)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;   /* wait for room first */
    sqe->user_data = UIO_PUMP_UD(UIO_PUMP_SEND, id);
    p->sending = 1;
    ws->inflight++;
    return 0;
}

/* Keep res bytes at off in buffer bid, at the queue's tail. */
static int uio_pump_hold(struct uio_pumps *ps, struct uio_pump *p, unsigned short bid,
                         unsigned off, unsigned res)
{
    if (p->npieces == p->qcap) {
        unsigned cap = p->qcap ? p->qcap * 2 : 8, i;
        struct uio_piece *nq = malloc(cap * sizeof(*nq));
        if (nq == NULL)
            return -ENOMEM;
        for (i = 0; i < p->npieces; i++)
            nq[i] = p->q[(p->head + i) % p->qcap];
        free(p->q);
        p->q = nq;
        p->qcap = cap;
        p->head = 0;
    }
    p->q[(p->head + p->npieces) % p->qcap] = (struct uio_piece){bid, off, res};
    p->npieces++;
    p->held += res;
    ps->pool->refs[bid]++;
    return 0;
}

/* Once nothing is in flight: the buffers go back, the report goes out.
 * Returns 1 when a report was written to out. */
static void uio_pumps_unstarve(struct io_uring *ring, struct uio_writers *ws);

static int uio_pump_settle(struct io_uring *ring, struct uio_writers *ws, int id, int64_t *out)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    struct uio_pump *p = ps->p[id];
    if (p->recving || p->sending)
        return 0;
    if (p->state == UIO_P_RUNNING && !(p->eof && p->npieces == 0))
        return 0;
    if (p->npieces) {
        for (; p->npieces; p->npieces--, p->head = (p->head + 1) % p->qcap)
            uio_pump_give_back(ps, p->q[p->head].bid);
        p->held = 0;
        uio_pumps_unstarve(ring, ws);
    }
    p->state = UIO_P_ENDED;
    out[0] = (int64_t)ws->report_ud;
    out[1] = -p->error;
    out[2] = UIO_PUMP_REPORT | (uint32_t)id;
    return 1;
}

/* An error ends the pump: cancel what is in flight (its CQE settles it). */
static void uio_pump_fail(struct io_uring *ring, struct uio_writers *ws, int id, int error)
{
    struct uio_pump *p = uio_pumps_of(ws)->p[id];
    if (p->state != UIO_P_RUNNING)
        return;
    p->state = UIO_P_ENDING;
    p->error = error;
    if (p->recving)
        uio_pump_cancel_op(ring, id, UIO_PUMP_RECV);
    if (p->sending)
        uio_pump_cancel_op(ring, id, UIO_PUMP_SEND);
    if (!p->recving && !p->sending) {
        /* Nothing in flight (src's EOF came while sends wait for none, or
         * the recv is starved): a nop stands in for the recv, so that the
         * pump settles, and reports, from uio_turn like any other. */
        struct io_uring_sqe *sqe = uio_sqe(ring);
        if (sqe != NULL) {
            io_uring_prep_nop(sqe);
            sqe->user_data = UIO_PUMP_UD(UIO_PUMP_RECV, id);
            p->recving = 1;
            ws->inflight++;
        }
    }
}

/* Python's cancel (close_fd on either socket, the loop's close): the pump
 * ends with ECANCELED. Its report comes in a later turn. */
void uio_pump_cancel(struct io_uring *ring, struct uio_writers *ws, int id)
{
    uio_pump_fail(ring, ws, id, ECANCELED);
}

/* Re-arm pumps that found the ring empty, now that buffers are back: as
 * many as there are buffers in the ring, first come first served. (All of
 * them would thrash: each recv that finds bytes and no buffer fails at once
 * again. Fewer could leave one starved for good: an armed recv takes no
 * buffer until bytes come, so its buffer may never be "used up".) */
static void uio_pumps_unstarve(struct io_uring *ring, struct uio_writers *ws)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    unsigned i = 0, woken = 0, free = ps->pool->added - ps->pool->held;
    while (i < ps->nstarved && woken < free) {
        int id = ps->starved[i++];
        struct uio_pump *p = ps->p[id];
        if (p->state == UIO_P_RUNNING && !p->recving && uio_pump_recv(ring, ws, id) == 0)
            woken++;
    }
    if (i) {   /* (none starved: the list may not even exist) */
        memmove(ps->starved, ps->starved + i, (ps->nstarved - i) * sizeof(int));
        ps->nstarved -= i;
    }
}

/* A pump's recv found the ring empty. If buffers came back since (other
 * pumps' sends, in this batch of CQEs), it is armed again at once; if none
 * did, more go in while the pool has room (doubling, as the receive
 * streams' ring does: few buffers keep the ones in use warm in cache);
 * else it waits for one to come back. (Growing for every -ENOBUFS, when a
 * burst ends many pumps' receives at once, doubled the pool once per pump:
 * 50 pumps of small messages took it to its most, 32,768 buffers.) */
static void uio_pump_starve(struct io_uring *ring, struct uio_writers *ws, int id)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    struct uio_pump_pool *pool = ps->pool;
    if (pool->added > pool->held || uio_pool_grow(pool, pool->added)) {
        if (uio_pump_recv(ring, ws, id) == 0)
            return;
    }
    if (ps->nstarved == ps->starved_cap) {
        unsigned cap = ps->starved_cap ? ps->starved_cap * 2 : 16;
        int *ns = realloc(ps->starved, cap * sizeof(int));
        if (ns == NULL)
            return;   /* re-armed at its own next send's completion instead */
        ps->starved = ns;
        ps->starved_cap = cap;
    }
    ps->starved[ps->nstarved++] = id;
}

/* A pump's CQE. Returns 1 when a report for Python was written to out. */
static int uio_pump_complete(struct io_uring *ring, struct uio_writers *ws,
                             const struct io_uring_cqe *cqe, int64_t *out)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    int id = (int)(cqe->user_data & 0xffffffffULL);
    uint64_t op = cqe->user_data & (3ULL << 32);
    struct uio_pump *p;
    int res = cqe->res;

    if (op == UIO_PUMP_CANCEL || ps == NULL || (unsigned)id >= ps->n)
        return 0;   /* a cancel that found nothing: the op it named ends anyway */
    p = ps->p[id];
    if (op == UIO_PUMP_RECV) {
        int rearm = 1;
        if (!(cqe->flags & IORING_CQE_F_MORE)) {   /* the recv's last CQE */
            p->recving = p->stopping = 0;
            ws->inflight--;
        }
        if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
            struct uio_pump_pool *pool = ps->pool;
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT, off = 0, held;
            if (bid >= pool->added || pool->used[bid] + (unsigned)res > pool->size) {
                uio_pump_fail(ring, ws, id, EIO);   /* a buffer the kernel never had */
                return uio_pump_settle(ring, ws, id, out);
            }
            if (pool->incremental)
                off = pool->used[bid];
            held = uio_pump_hold(ps, p, (unsigned short)bid, off, res) == 0;
            if (pool->incremental && (cqe->flags & IORING_CQE_F_BUF_MORE)) {
                pool->used[bid] += (unsigned)res;   /* the kernel goes on in it */
            } else {
                pool->held++;                       /* out of the ring */
                uio_pump_give_back(ps, (unsigned short)bid);   /* (the kernel's reference) */
            }
            if (!held)
                uio_pump_fail(ring, ws, id, ENOMEM);
            else if (p->state == UIO_P_RUNNING) {
                if (uio_pump_send(ring, ws, id))
                    uio_pump_fail(ring, ws, id, EBUSY);
                else if (p->recving && !p->stopping && uio_pump_full(ps, p)) {
                    p->stopping = 1;   /* held enough: stop until sends make room */
                    uio_pump_cancel_op(ring, id, UIO_PUMP_RECV);
                }
            }
        } else if (res == 0) {
            p->eof = 1;
        } else if (res == -ENOBUFS && p->state == UIO_P_RUNNING) {
            uio_pump_starve(ring, ws, id);   /* (re-armed there, or when one is back) */
            rearm = 0;
        } else if ((res == -ECANCELED || res == -EAGAIN) && p->state == UIO_P_RUNNING) {
            ;   /* stopped (armed again once sends make room), or nothing to read */
        } else if (p->state == UIO_P_RUNNING) {
            uio_pump_fail(ring, ws, id, res < 0 ? -res : EIO);
        }
        if (rearm && !p->recving && uio_pump_recv(ring, ws, id))
            uio_pump_fail(ring, ws, id, EBUSY);
    } else {
        ws->inflight--;
        p->sending = 0;
        if (res > 0 && p->state == UIO_P_RUNNING) {
            unsigned left = (unsigned)res, gave = 0;
            p->dst_full = 0;
            p->total += (unsigned long long)res;
            p->held -= (unsigned long long)res;
            while (left) {   /* the pieces it took, the last maybe in part */
                struct uio_piece *piece = &p->q[p->head];
                unsigned n = left < piece->len ? left : piece->len;
                piece->off += n;
                piece->len -= n;
                left -= n;
                if (piece->len == 0) {
                    uio_pump_give_back(ps, piece->bid);
                    p->head = (p->head + 1) % p->qcap;
                    p->npieces--;
                    gave = 1;
                }
            }
            if (gave)
                uio_pumps_unstarve(ring, ws);
            if (uio_pump_send(ring, ws, id) || uio_pump_recv(ring, ws, id))
                uio_pump_fail(ring, ws, id, EBUSY);
        } else if (res == -EAGAIN && p->state == UIO_P_RUNNING) {
            /* dst is non-blocking and full: io_uring hands a non-blocking
             * socket's EAGAIN back instead of waiting. Send again, polling
             * for room first. */
            p->dst_full = 1;
            if (uio_pump_send(ring, ws, id))
                uio_pump_fail(ring, ws, id, EBUSY);
        } else if (p->state == UIO_P_RUNNING) {
            /* A stream socket that takes nothing is broken. */
            uio_pump_fail(ring, ws, id, res < 0 ? -res : EPIPE);
        }
    }
    return uio_pump_settle(ring, ws, id, out);
}

unsigned long long uio_pump_total(struct uio_writers *ws, int id)
{
    return uio_pumps_of(ws)->p[id]->total;
}

/* After its report: the slot is free for the next pump. */
void uio_pump_release(struct uio_writers *ws, int id)
{
    struct uio_pumps *ps = uio_pumps_of(ws);
    struct uio_pump *p = ps->p[id];
    if (p->state != UIO_P_ENDED)
        return;   /* still in flight: released by nobody, a bug to see in tests */
    free(p->q);
    memset(p, 0, sizeof(*p));
    p->state = UIO_P_FREE;
    p->src = ps->free_head;
    ps->free_head = id;
}

static void uio_pumps_destroy(struct uio_pumps *ps)
{
    if (ps == NULL)
        return;
    uio_pool_free(ps->pool);   /* (the ring is gone: nothing to unregister) */
    for (unsigned i = 0; i < ps->n; i++) {
        free(ps->p[i]->q);
        free(ps->p[i]);
    }
    free(ps->p);
    free(ps->starved);
    free(ps);
}

static struct uio_pumps *uio_pumps_of(struct uio_writers *ws)
{
    if (ws->pumps == NULL && (ws->pumps = calloc(1, sizeof(struct uio_pumps))) != NULL)
        ws->pumps->free_head = -1;
    return ws->pumps;
}
