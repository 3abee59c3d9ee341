/*
 * libFuzzer harness for the uring backend's C send streams ("writers",
 * _build/_core/uring_helpers.c, compiled in whole): uio_write,
 * uio_write_ref, uio_writers_take_released, uio_writer_notify,
 * uio_writer_release, uio_writer_open, the per-turn flush
 * (uio_writers_flush) and the completion of their sends
 * (uio_writer_complete), fed synthetic completions by a fake kernel.
 *
 * The fake kernel is a struct io_uring whose SQ is memory of ours: after
 * each step it takes the SQEs the writers prepared (as a kernel would at
 * submit), keeps them in flight, and later completes one -- any one, in
 * any order across writers -- with a full count, a short count, 0, or an
 * error (-EPIPE, -ECANCELED, -ENOBUFS, -ECONNRESET, -EAGAIN), as the
 * input says. The SQ may be as small as 2 entries, so a full SQ (liburing's
 * submit then fails on the fake ring, fd -1) and the -EBUSY paths are
 * reached too. It never completes a send twice or one not in flight: the
 * real kernel does not.
 *
 * A model of each stream checks, step by step:
 *   - the bytes the kernel is asked to send (a send, or a sendmsg's
 *     iovecs) are exactly the next unsent bytes written, in order, none
 *     twice, none skipped, on the writer's fd, with user_data
 *     UIO_WRITER_TAG | wid;
 *   - a write by reference (uio_write_ref: the harness's own allocation,
 *     its token) is handed back by uio_writers_take_released exactly once:
 *     after its bytes are all sent, or once the writer failed or was
 *     released -- never while a send in flight reads it (the harness frees
 *     it then, so ASan sees any later read);
 *   - at most one send per writer is in flight, and its buffer is not
 *     changed until its CQE (the ownership rule), whatever is written
 *     meanwhile;
 *   - uio_write returns the bytes buffered (written, not yet sent), or
 *     -errno once a send failed; uio_writer_buffered agrees;
 *   - a failed send (res < 0, or 0: -EPIPE) is reported once, as the
 *     triple (report user_data, -errno, wid), and a level asked for with
 *     uio_writer_notify is reported once, when the bytes buffered fall to
 *     it, as (report user_data, buffered, UIO_WRITER_LEVEL | wid);
 *   - a writer with nothing to send holds no buffer (uio_writer_held);
 *   - a released writer with a send in flight keeps its buffer until the
 *     CQE, which is then not reported; uio_writer_open never hands out a
 *     wid whose send is still in flight.
 * ASan and UBSan watch the C (buffer pools, the dirty list, the free list).
 */
#include "uring_helpers.c"   /* first: it defines _GNU_SOURCE for the headers */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) do { fprintf(stderr, "writers: " __VA_ARGS__); fputc('\n', stderr); \
                       abort(); } while (0)

#define MAX_WRITERS 8
#define SQ_MAX 64
#define REPORT_UD 1

/* -- the input, read as a stream of choices ------------------------------ */

static const uint8_t *in_data;
static size_t in_left;

static unsigned take(unsigned below)   /* 0..below-1; 0 once the input is used up */
{
    unsigned v = 0;
    for (unsigned span = below; span > 1 && in_left; span >>= 8) {
        v = (v << 8) | *in_data++;
        in_left--;
    }
    return below ? v % below : 0;
}

/* -- the fake kernel ------------------------------------------------------ */

static struct uio_writers *ws;   /* the writers under test */

static struct io_uring ring;
static unsigned khead, ktail, kflags, kdropped, ring_mask_v, ring_entries_v, sq_array[SQ_MAX];
static struct io_uring_sqe sqes[SQ_MAX];

#define MAX_IOV 64

struct send {              /* a send the kernel holds */
    int wid;
    struct iovec iov[MAX_IOV];   /* what it sends from (a send: one) */
    int niov;
    size_t len;
    char *copy;            /* its bytes when it was submitted */
};
static struct send inflight[4 * MAX_WRITERS];
static int ninflight;

/* -- the model ------------------------------------------------------------ */

struct stream {
    int open;              /* the model's: 0 free, 1 open, 2 released with a send in flight */
    int wid, fd;
    unsigned char *written;   /* every byte accepted, in order */
    size_t nwritten, cap, sent;
    int failed;            /* errno */
    long long notify_at;   /* -1: none armed */
    int sending;           /* a send in flight */
};
static struct stream streams[MAX_WRITERS];

/* The writes by reference not yet handed back: each the harness's own
 * copy of the bytes, which it frees when handed back. */
struct ref {
    unsigned char *mem;    /* NULL: a free slot */
    size_t len;
    int wid;
    size_t end;            /* where its bytes end in the stream */
};
#define MAX_REFS 256
static struct ref refs[MAX_REFS];

/* The harness's own per-byte loop, left out of coverage: instrumented, its
 * comparison and shadow check per byte were most of the time spent per input
 * (perf), and it has no branch worth steering the fuzzer by. */
__attribute__((noinline, no_sanitize("coverage", "address")))
static void fill_pattern(unsigned char *data, int wid, size_t from, size_t len)
{
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(((from + i) * 131 + (size_t)wid * 17 + ((from + i) >> 8)) & 0xff);
}

static struct stream *by_wid(int wid)
{
    for (int i = 0; i < MAX_WRITERS; i++)
        if (streams[i].open && streams[i].wid == wid)
            return &streams[i];
    return NULL;
}

/* The kernel takes what the writers prepared since the last look. */
static void kernel_takes(void)
{
    unsigned tail = ring.sq.sqe_tail;
    for (unsigned i = khead; i != tail; i++) {
        struct io_uring_sqe *sqe = &sqes[i & ring_mask_v];
        if (sqe->opcode != IORING_OP_SEND && sqe->opcode != IORING_OP_SENDMSG)
            FAIL("an SQE that is not a send: opcode %d", sqe->opcode);
        if (!(sqe->user_data & UIO_WRITER_TAG))
            FAIL("a send without the writer tag: %llx", (unsigned long long)sqe->user_data);
        int wid = (int)(sqe->user_data & 0xffffffffULL);
        struct stream *s = by_wid(wid);
        if (s == NULL)
            FAIL("a send for writer %d, which is not open", wid);
        if (s->sending)
            FAIL("a second send in flight for writer %d", wid);
        if (sqe->fd != s->fd)
            FAIL("writer %d sends on fd %d, not %d", wid, sqe->fd, s->fd);
        if (ninflight == (int)(sizeof inflight / sizeof inflight[0]))
            FAIL("too many sends in flight");
        struct send *k = &inflight[ninflight++];
        k->wid = wid;
        if (sqe->opcode == IORING_OP_SEND) {
            k->niov = 1;
            k->iov[0].iov_base = (void *)(uintptr_t)sqe->addr;
            k->iov[0].iov_len = sqe->len;
        } else {
            /* (read now, as the kernel reads the header at submit) */
            const struct msghdr *msg = (const struct msghdr *)(uintptr_t)sqe->addr;
            if (msg->msg_iovlen < 2 || msg->msg_iovlen > MAX_IOV || msg->msg_name ||
                    msg->msg_control)
                FAIL("writer %d: a sendmsg of %zu iovecs", wid, (size_t)msg->msg_iovlen);
            k->niov = (int)msg->msg_iovlen;
            memcpy(k->iov, msg->msg_iov, k->niov * sizeof(struct iovec));
        }
        k->len = 0;
        for (int j = 0; j < k->niov; j++) {
            if (k->iov[j].iov_len == 0)
                FAIL("writer %d sends an empty piece", wid);
            k->len += k->iov[j].iov_len;
        }
        if (s->sent + k->len > s->nwritten)
            FAIL("writer %d sends %zu bytes, %zu unsent", wid, k->len, s->nwritten - s->sent);
        k->copy = malloc(k->len);
        size_t at = 0;
        for (int j = 0; j < k->niov; j++) {
            memcpy(k->copy + at, k->iov[j].iov_base, k->iov[j].iov_len);
            at += k->iov[j].iov_len;
        }
        if (memcmp(k->copy, s->written + s->sent, k->len) != 0)
            FAIL("writer %d sends other bytes than the next %zu written", wid, k->len);
        s->sending = 1;
    }
    khead = tail;
    ring.sq.sqe_head = tail;
}

/* The writers' per-turn flush, as uio_turn does it before its submit. */
static void turn(void)
{
    if (ring.sq.sqe_tail != khead)
        FAIL("SQEs left untaken");
    uio_writers_flush(&ring, ws);
    kernel_takes();
}


static void check_stream(struct stream *s)
{
    if (s->open != 1)
        return;
    long long buffered = uio_writer_buffered(ws, s->wid);
    long long want = s->failed ? 0 : (long long)(s->nwritten - s->sent);
    if (buffered != want)
        FAIL("writer %d buffers %lld, the model %lld", s->wid, buffered, want);
    if (buffered == 0 && !s->sending && uio_writer_held(ws, s->wid) != 0)
        FAIL("writer %d holds %llu bytes of buffer with nothing to send", s->wid,
             uio_writer_held(ws, s->wid));
}

/* The kernel completes send k with res. */
static void complete(int k, int res)
{
    struct send send = inflight[k];
    inflight[k] = inflight[--ninflight];
    struct stream *s = NULL;
    for (int i = 0; i < MAX_WRITERS; i++)
        if (streams[i].open && streams[i].wid == send.wid)
            s = &streams[i];
    if (s == NULL)
        FAIL("a send of writer %d, which the model lost", send.wid);
    size_t at = 0;
    for (int j = 0; j < send.niov; j++) {
        if (memcmp(send.iov[j].iov_base, send.copy + at, send.iov[j].iov_len) != 0)
            FAIL("writer %d changed a buffer the kernel was sending from", send.wid);
        at += send.iov[j].iov_len;
    }
    free(send.copy);
    struct io_uring_cqe cqe = {.user_data = UIO_WRITER_TAG | (uint64_t)send.wid, .res = res};
    int64_t out[UIO_CQE_WORDS] = {0};
    /* What the writer had in active beyond this send (more pieces than
     * one sendmsg takes), before the completion changes it. */
    size_t active_left = ws->w[send.wid].active.bytes > (size_t)(res > 0 ? res : 0)
        ? ws->w[send.wid].active.bytes - (size_t)(res > 0 ? res : 0) : 0;
    int reported = uio_writer_complete(&ring, ws, &cqe, out);
    s->sending = 0;
    if (s->open == 2) {   /* released: freed now, never reported */
        if (reported)
            FAIL("a released writer %d reported", send.wid);
        free(s->written);
        memset(s, 0, sizeof *s);
        return;
    }
    long long want_res = 0;
    int want_report = 0;
    uint32_t want_flags = (uint32_t)send.wid;
    if (res > 0) {
        s->sent += (size_t)res;
        /* A short send goes on at once (a new SQE), and so do the bytes
         * written meanwhile after a whole one -- unless there is no SQE:
         * then the stream fails with -EBUSY. */
        if (s->sent < s->nwritten) {
            kernel_takes();
            if (!s->sending) {
                s->failed = EBUSY;
                want_report = 1;
                want_res = -EBUSY;
            }
        }
        /* A level is looked at once the active bytes are all sent, not
         * after a short send (its continuation's CQE will look). */
        if (!want_report && !active_left && s->notify_at >= 0 &&
                (long long)(s->nwritten - s->sent) <= s->notify_at) {
            s->notify_at = -1;
            want_report = 1;
            want_res = (long long)(s->nwritten - s->sent);
            want_flags |= UIO_WRITER_LEVEL;
        }
    } else {
        s->failed = res == 0 ? EPIPE : -res;
        want_report = 1;
        want_res = res == 0 ? -EPIPE : res;
    }
    if (reported != want_report)
        FAIL("writer %d: %s report after res %d (sent %zu of %zu, notify at %lld, failed %d, "
             "report %lld %llx)", send.wid, reported ? "a" : "no", res, s->sent, s->nwritten,
             s->notify_at, s->failed, (long long)out[1], (long long)out[2]);
    if (reported && (out[0] != REPORT_UD || out[1] != want_res || (uint32_t)out[2] != want_flags))
        FAIL("writer %d reports (%lld, %lld, %llx), the model (1, %lld, %x)", send.wid,
             (long long)out[0], (long long)out[1], (long long)out[2], want_res, want_flags);
    check_stream(s);
}

static void write_bytes(struct stream *s, size_t len)
{
    if (s->nwritten + len > s->cap) {
        s->cap = (s->nwritten + len) * 2;
        s->written = realloc(s->written, s->cap);
    }
    unsigned char *data = malloc(len ? len : 1);
    fill_pattern(data, s->wid, s->nwritten, len);
    long long got = uio_write(ws, s->wid, (const char *)data, len);
    if (s->failed) {
        if (got != -s->failed)
            FAIL("writer %d, failed with %d, wrote: %lld", s->wid, s->failed, got);
    } else {
        if (len)
            memcpy(s->written + s->nwritten, data, len);
        s->nwritten += len;
        if (got != (long long)(s->nwritten - s->sent))
            FAIL("uio_write returned %lld, the model %zu", got, s->nwritten - s->sent);
    }
    free(data);
    /* The caller's bytes are copied in: scribbling on them changes nothing. */
    check_stream(s);
}

static void write_ref(struct stream *s, size_t len)
{
    int slot = -1;
    for (int i = 0; i < MAX_REFS; i++)
        if (refs[i].mem == NULL) {
            slot = i;
            break;
        }
    if (slot < 0 || len == 0)
        return;
    if (s->nwritten + len > s->cap) {
        s->cap = (s->nwritten + len) * 2;
        s->written = realloc(s->written, s->cap);
    }
    unsigned char *mem = malloc(len);
    fill_pattern(mem, s->wid, s->nwritten, len);
    long long got = uio_write_ref(ws, s->wid, (const char *)mem, len, &refs[slot]);
    if (s->failed) {
        if (got != -s->failed)
            FAIL("writer %d, failed with %d, wrote by reference: %lld", s->wid, s->failed, got);
        free(mem);   /* not taken */
        return;
    }
    memcpy(s->written + s->nwritten, mem, len);
    s->nwritten += len;
    if (got != (long long)(s->nwritten - s->sent))
        FAIL("uio_write_ref returned %lld, the model %zu", got, s->nwritten - s->sent);
    refs[slot] = (struct ref){mem, len, s->wid, s->nwritten};
    check_stream(s);
}

/* The references handed back: each once, none a send in flight reads, and
 * only those done with (sent, or their writer failed or released). */
static void check_released(void)
{
    void *out[16];
    unsigned n;
    while ((n = uio_writers_take_released(ws, out, 16)) > 0) {
        for (unsigned i = 0; i < n; i++) {
            struct ref *r = out[i];
            if (r < refs || r >= refs + MAX_REFS || r->mem == NULL)
                FAIL("a token handed back that is not held (twice, or never given)");
            struct stream *s = r->wid >= 0 ? by_wid(r->wid) : NULL;
            if (s != NULL && s->open == 1 && !s->failed && r->end > s->sent)
                FAIL("writer %d handed back a reference %zu bytes before sending it "
                     "(end %zu len %zu sent %zu written %zu sending %d)", r->wid,
                     r->end - s->sent, r->end, r->len, s->sent, s->nwritten, s->sending);
            for (int k = 0; k < ninflight; k++)
                for (int j = 0; j < inflight[k].niov; j++) {
                    const unsigned char *b = inflight[k].iov[j].iov_base;
                    if (b < r->mem + r->len && b + inflight[k].iov[j].iov_len > r->mem)
                        FAIL("writer %d handed back a reference a send in flight reads",
                             r->wid);
                }
            free(r->mem);
            r->mem = NULL;
        }
    }
}

/* The caller is done with s's writer. */
static void release_stream(struct stream *s)
{
    uio_writer_release(ws, s->wid);
    for (int i = 0; i < MAX_REFS; i++)   /* its references may go now (its wid soon
                                          * serves another writer) */
        if (refs[i].mem != NULL && refs[i].wid == s->wid)
            refs[i].wid = -1;
    if (s->sending) {
        s->open = 2;
    } else {
        free(s->written);
        memset(s, 0, sizeof *s);
    }
}

static void setup_ring(unsigned entries)
{
    memset(&ring, 0, sizeof ring);
    khead = ktail = kflags = kdropped = 0;
    ring_entries_v = entries;
    ring_mask_v = entries - 1;
    ring.sq.khead = &khead;
    ring.sq.ktail = &ktail;
    ring.sq.kring_mask = &ring_mask_v;
    ring.sq.kring_entries = &ring_entries_v;
    ring.sq.kflags = &kflags;
    ring.sq.kdropped = &kdropped;
    ring.sq.array = sq_array;
    ring.sq.sqes = sqes;
    ring.sq.ring_mask = ring_mask_v;
    ring.sq.ring_entries = entries;
    ring.ring_fd = ring.enter_ring_fd = -1;   /* a submit fails: EBADF */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in_data = data;
    in_left = size;
    setup_ring(2u << take(6));   /* 2..64 entries */
    ws = uio_writers_new(REPORT_UD);
    memset(streams, 0, sizeof streams);
    memset(refs, 0, sizeof refs);
    ninflight = 0;
    static const int errors[] = {-EPIPE, -ECANCELED, -ENOBUFS, -ECONNRESET, -EAGAIN, -EINTR};
    while (in_left) {
        unsigned action = take(16);
        struct stream *s = &streams[take(MAX_WRITERS)];
        if (action < 2) {                        /* open */
            if (s->open)
                continue;
            int wid = uio_writer_open(ws, (int)take(100));
            if (wid < 0)
                FAIL("uio_writer_open: %d", wid);
            for (int k = 0; k < ninflight; k++)
                if (inflight[k].wid == wid)
                    FAIL("uio_writer_open handed out wid %d, whose send is in flight", wid);
            memset(s, 0, sizeof *s);
            s->open = 1;
            s->wid = wid;
            s->fd = ws->w[wid].fd;
            s->notify_at = -1;
        } else if (action == 2) {                /* write by reference */
            if (s->open != 1)
                continue;
            size_t len = take(2) ? 1 + take(70000) : 1 + take(64);
            if (s->nwritten + len > (256u << 10))
                continue;
            write_ref(s, len);
        } else if (action < 7) {                 /* write */
            if (s->open != 1)
                continue;
            static const size_t sizes[] = {0, 1, 7, 511, 512, 513, 4096, 65535, 65536, 70000};
            size_t len = take(8) ? take(3000) : sizes[take(10)];
            if (s->nwritten + len > (256u << 10))
                len = 0;                         /* 256 KiB per stream is plenty */
            write_bytes(s, len);
        } else if (action == 7) {                /* notify */
            if (s->open != 1)
                continue;
            long long level = take(4) ? (long long)take(8192) : 0;
            int now = uio_writer_notify(ws, s->wid, level);
            long long buffered = s->failed ? 0 : (long long)(s->nwritten - s->sent);
            if (now != (buffered <= level))
                FAIL("notify(%lld) with %lld buffered said %d", level, buffered, now);
            s->notify_at = now ? -1 : level;
        } else if (action == 8) {                /* release */
            if (s->open != 1)
                continue;
            release_stream(s);
        } else if (action < 12) {                /* a turn */
            turn();
        } else if (ninflight) {                  /* a completion, any in flight */
            int k = (int)take((unsigned)ninflight);
            int res;
            switch (take(5)) {
            case 0: case 1: res = (int)inflight[k].len; break;
            case 2: res = 1 + (int)take((unsigned)inflight[k].len); break;   /* short */
            case 3: res = 0; break;
            default: res = errors[take(6)]; break;
            }
            if (res > (int)inflight[k].len)
                res = (int)inflight[k].len;
            complete(k, res);
        }
        for (int i = 0; i < MAX_WRITERS; i++)
            check_stream(&streams[i]);
        check_released();
        if (uio_writers_inflight(ws) != (unsigned)ninflight)
            FAIL("uio_writers_inflight %u, the kernel holds %d", uio_writers_inflight(ws),
                 ninflight);
    }
    /* The kernel finishes what it holds (as cancels would), then all goes. */
    while (ninflight) {
        complete(ninflight - 1, -ECANCELED);
        check_released();
    }
    /* Open writers released: every reference is handed back. */
    for (int i = 0; i < MAX_WRITERS; i++)
        if (streams[i].open == 1)
            release_stream(&streams[i]);
    check_released();
    for (int i = 0; i < MAX_REFS; i++)
        if (refs[i].mem != NULL)
            FAIL("a reference of writer %d never handed back", refs[i].wid);
    for (int i = 0; i < MAX_WRITERS; i++)
        free(streams[i].written);
    uio_writers_destroy(ws);
    return 0;
}
