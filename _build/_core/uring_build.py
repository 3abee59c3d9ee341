"""cffi API-mode build of ``uringio._core._liburing``.

Most of liburing is ``static inline`` (IOURINGINLINE), so it cannot be reached
through ``dlopen``: this script compiles a small extension against liburing's
header; setup.py links ``liburing.a`` into it statically (the vendored release,
``_build/liburing_build.py``), so the built module has no run-time dependency
on a shared library.

The C helpers are shaped for the cost model of Python: a foreign call costs
far more than the C work inside it, so

* one call prepares one SQE completely (get_sqe + prep + flags + user_data),
  and flushes the SQ itself when it is full;
* one call per loop turn returns consumed buffers to the buffer ring, submits,
  waits, and copies a whole batch of CQEs out as (user_data, res, flags)
  triples, advancing the CQ once.
"""

import os

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
#define IORING_OP_OPENAT ...
#define IORING_OP_FSYNC ...
#define IORING_OP_STATX ...
#define IORING_OP_FALLOCATE ...
#define IORING_OP_UNLINKAT ...
#define IORING_OP_RENAMEAT ...
#define IORING_OP_MKDIRAT ...
#define IORING_FSYNC_DATASYNC ...
#define AT_FDCWD ...
#define AT_REMOVEDIR ...
#define AT_EMPTY_PATH ...
#define AT_SYMLINK_NOFOLLOW ...
#define STATX_BASIC_STATS ...

struct statx_timestamp { int64_t tv_sec; uint32_t tv_nsec; ...; };
struct statx {
    uint32_t stx_mask; uint32_t stx_blksize; uint32_t stx_nlink; uint32_t stx_uid;
    uint32_t stx_gid; uint16_t stx_mode; uint64_t stx_ino; uint64_t stx_size;
    uint64_t stx_blocks; struct statx_timestamp stx_atime; struct statx_timestamp stx_mtime;
    struct statx_timestamp stx_ctime; uint32_t stx_rdev_major; uint32_t stx_rdev_minor;
    uint32_t stx_dev_major; uint32_t stx_dev_minor; ...;
};
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
    unsigned added;
    int incremental;
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
int uio_prep_recv_deadline(struct io_uring *ring, int fd, void *buf, unsigned len,
                           int flags, uint64_t user_data, struct __kernel_timespec *ts);
int uio_prep_poll_add(struct io_uring *ring, int fd, unsigned mask, uint64_t user_data);
int uio_prep_connect(struct io_uring *ring, int fd, const void *addr, unsigned len,
                     uint64_t user_data);
int uio_prep_send(struct io_uring *ring, int fd, const void *buf, unsigned len,
                  int flags, uint64_t user_data);
int uio_prep_read(struct io_uring *ring, int fd, void *buf, unsigned len,
                  uint64_t offset, uint64_t user_data);
int uio_prep_close(struct io_uring *ring, int fd, uint64_t user_data, unsigned sqe_flags);
int uio_prep_splice(struct io_uring *ring, int fd_in, int64_t off_in, int fd_out,
                    int64_t off_out, unsigned nbytes, uint64_t user_data, unsigned sqe_flags);
int uio_prep_poll_splice(struct io_uring *ring, int poll_fd, unsigned mask,
                         uint64_t poll_data, int fd_in, int fd_out, unsigned nbytes,
                         uint64_t user_data);
int uio_prep_timeout(struct io_uring *ring, struct __kernel_timespec *ts,
                     unsigned count, unsigned flags, uint64_t user_data);
int uio_prep_cancel64(struct io_uring *ring, uint64_t target, int flags,
                      uint64_t user_data, unsigned sqe_flags);
int uio_prep_cancel_fd(struct io_uring *ring, int fd, int flags,
                       uint64_t user_data, unsigned sqe_flags);
int uio_sync_cancel(struct io_uring *ring, uint64_t user_data);
void uio_ring_counters(struct io_uring *ring, uint32_t out[3]);

int uio_prep_openat(struct io_uring *ring, int dfd, const char *path, int flags,
                    unsigned mode, uint64_t user_data);
int uio_prep_write(struct io_uring *ring, int fd, const void *buf, unsigned len,
                   uint64_t offset, uint64_t user_data, unsigned sqe_flags);
int uio_prep_fsync(struct io_uring *ring, int fd, unsigned fsync_flags, uint64_t user_data,
                   unsigned sqe_flags);
int uio_prep_statx(struct io_uring *ring, int dfd, const char *path, int flags,
                   unsigned mask, struct statx *buf, uint64_t user_data);
int uio_prep_fallocate(struct io_uring *ring, int fd, int mode, uint64_t offset,
                       uint64_t len, uint64_t user_data);
int uio_prep_unlinkat(struct io_uring *ring, int dfd, const char *path, int flags,
                      uint64_t user_data);
int uio_prep_renameat(struct io_uring *ring, int olddfd, const char *oldpath, int newdfd,
                      const char *newpath, unsigned flags, uint64_t user_data);
int uio_prep_mkdirat(struct io_uring *ring, int dfd, const char *path, unsigned mode,
                     uint64_t user_data);

int uio_submit(struct io_uring *ring);
struct uio_writers;
struct uio_pace {
    unsigned chunk;
    unsigned left;
    unsigned long long clumps;
};
int uio_turn(struct io_uring *ring, struct uio_bufring *br, struct uio_writers *ws,
             unsigned wait_nr, long long timeout_ns, struct uio_pace *pace,
             unsigned clump, int64_t *out, unsigned max);

#define UIO_WRITER_TAG ...
#define UIO_READ_TAG ...
#define UIO_OP_ID_LIMIT ...
#define UIO_WRITER_LEVEL ...
#define UIO_WRITER_ID_MASK ...
#define UIO_PUMP_TAG ...
#define UIO_PUMP_REPORT ...
#define UIO_CQE_WORDS ...
#define UIO_CQE_OFFSET_SHIFT ...
struct uio_writers *uio_writers_new(uint64_t report_ud);
void uio_writers_destroy(struct uio_writers *ws);
unsigned uio_writers_inflight(struct uio_writers *ws);
int uio_writer_open(struct uio_writers *ws, int fd);
void uio_writer_release(struct uio_writers *ws, int wid);
long long uio_write(struct uio_writers *ws, int wid, const char *data, size_t len);
long long uio_write_ref(struct uio_writers *ws, int wid, const char *data, size_t len,
                        void *token);
unsigned uio_writers_take_released(struct uio_writers *ws, void **out, unsigned max);
const void *uio_writer_api_address(void);
#define UIO_RELEASED_USER_DATA ...
long long uio_writer_buffered(struct uio_writers *ws, int wid);
unsigned long long uio_writer_sends(struct uio_writers *ws, int wid);
unsigned long long uio_writer_sent(struct uio_writers *ws, int wid);
unsigned long long uio_writer_held(struct uio_writers *ws, int wid);
int uio_writer_notify(struct uio_writers *ws, int wid, long long level);
#define UIO_PUMP_HOLD ...
#define UIO_PUMP_PIECES ...
int uio_pumps_setup(struct io_uring *ring, struct uio_writers *ws, int bgid, unsigned max,
                    unsigned size);
unsigned uio_pumps_buffers(struct uio_writers *ws, int held);
void uio_pumps_teardown(struct io_uring *ring, struct uio_writers *ws);
int uio_pump_open(struct io_uring *ring, struct uio_writers *ws, int src, int dst);
void uio_pump_cancel(struct io_uring *ring, struct uio_writers *ws, int id);
unsigned long long uio_pump_total(struct uio_writers *ws, int id);
void uio_pump_release(struct uio_writers *ws, int id);

int uio_bufring_setup(struct io_uring *ring, struct uio_bufring *br,
                      unsigned entries, unsigned size, int bgid, unsigned initial,
                      int incremental);
unsigned uio_bufring_grow(struct uio_bufring *br, unsigned n);
void uio_bufring_free(struct io_uring *ring, struct uio_bufring *br);
"""

HERE = os.path.dirname(os.path.abspath(__file__))

# The helpers themselves live in a real C file beside this one, after the
# rule for which of them release the GIL (keep_gil.h: all but uio_turn keep it).
SOURCE = (open(os.path.join(HERE, os.pardir, "keep_gil.h")).read()
          + open(os.path.join(HERE, "uring_helpers.c")).read())


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "uringio._core._liburing",
    SOURCE,
    include_dirs=[HERE],   # uring_shared.h, which _fastpath includes too
    depends=[os.path.join(HERE, name)
             for name in ("uring_helpers.c", "uring_pumps.c", "uring_shared.h",
                          os.path.join(os.pardir, "keep_gil.h"))],
    # liburing itself (its headers, liburing.a, UIO_LIBURING_VERSION) is added by
    # setup.py's build_ext, from _build/liburing_build.py: vendored unless asked.
    extra_compile_args=["-O2"],
)
