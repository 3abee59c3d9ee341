/*
 * uringio._core._fastpath: the per-message paths of the io_uring backend (the
 * CQE dispatcher, the send-stream writes, the file reads), and the one both
 * backends share (Connection.write), as CPython C-API code.
 *
 * Why this is not cffi: a cffi call converts each argument through its type
 * machinery, about 30 ns apiece, and a Python loop over CQEs pays the
 * interpreter for every index and branch. Per 64-byte echo that was ~0.4 us of
 * the ~0.85 us of Python a message cost, on top of ~4.8 us of kernel work.
 * Here the same steps are plain C calls made through vectorcall.
 *
 * RingMemory(cqes, ncqes, writers, write_fn)
 *     The C memory of one Ring that these paths use: the CQE array that
 *     _liburing's uio_turn() fills, its writer table and the uio_write()
 *     function (uring_shared.h, shared with _liburing), and, once
 *     attach_buffers(base, size, count) is called, the provided buffers.
 *     The Ring owns that memory; it calls close() before it frees any of
 *     it, and from then on every Dispatcher and Writer made on this
 *     RingMemory raises RuntimeError rather than touch it. Writers may be
 *     called only from the thread that created the RingMemory (the ring's,
 *     which with IORING_SETUP_SINGLE_ISSUER is the only one that may use it).
 *
 * Dispatcher(memory, slots, op_type, recv_stream)
 *     d(start, n) dispatches CQEs start..n-1 of the array, each to its Op
 *     (slots[user_data]): a receive stream's bytes that go on
 *     (res > 0, IORING_CQE_F_MORE, not cancelled) are copied out of their
 *     provided buffer (from the offset uio_turn put above the flags) into a
 *     bytes object for op.handler(data); every other CQE goes to
 *     op.on_complete(op, res, flags), flags with that offset above bit 32.
 *     When a handler raises, the exception propagates and d.failed is the
 *     index of that CQE, so the caller can report it and go on from the
 *     next one.
 *
 * Writer(memory, wid)
 *     w(data) queues bytes ``data`` on C send stream ``wid``: one C call,
 *     returns what uio_write returns (bytes buffered, or -errno).
 *     w.release() ends that: later calls return -EBADF.
 *
 * FileReads(memory, ring, prep_read, os_error, report)
 *     The ring's file reads, with no Python Op: r.future(fd, buf, offset)
 *     makes an asyncio future and prepares the read's SQE in one call
 *     (r.read(fd, buf, offset, handler) the same with a handler), and the
 *     Dispatcher hands it each CQE whose user_data carries UIO_READ_TAG,
 *     above the op table's ids: a short read goes on, the final CQE
 *     releases the buffer (held as a Py_buffer from the start, so also
 *     after a cancel) and sets the future's result or calls the handler.
 *     Per 4 KiB read from the page cache, 64 in flight, that took a read
 *     from ~5.2 us to ~2.1 us in all, about half of it now the kernel's
 *     (the Op, pin, prep, on_complete and resolve were ~3 us of Python).
 *
 * connection_write(Connection, write)
 *     Connection.write (net/connection.py) as a method in C: the same steps
 *     for the common write (bytes, the connection open, no file queued
 *     ahead), which hand the bytes to the stream's writer (Writer above,
 *     or the epoll backend's) without a Python frame; everything else goes
 *     to ``write``, the Python method it replaces. A frame was ~90 ns of
 *     each write, about 1% of an HTTP request's CPU end to end.
 *
 * Every type here checks that it was initialised: one made with __new__
 * alone raises when called, it never reads a NULL pointer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <structmember.h>
#include <pythread.h>
#include <liburing.h>   /* IORING_CQE_F_MORE, IORING_CQE_BUFFER_SHIFT */

#include "pyslots.h"
#include "raised.h"
#include "uring_shared.h"

/* -- RingMemory ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    const int64_t *cqes;      /* UIO_CQE_WORDS per CQE; NULL: closed */
    Py_ssize_t ncqes;         /* how many CQEs the array holds */
    struct uio_writers *writers;
    const struct uio_writer_api *api;
    const char *buf_base;     /* provided buffers; NULL: none attached */
    Py_ssize_t buf_size, buf_count;
    unsigned long owner;      /* PyThread_get_thread_ident() of the ring's thread */
    struct FileReads *reads;  /* the ring's file reads (borrowed; it holds us), or NULL */
} RingMemory;

/* The FileReads half the Dispatcher calls (below); its CQEs carry
 * UIO_READ_TAG (uring_shared.h). */
static int file_read_cqe(RingMemory *m, uint64_t user_data, int32_t res);
static void file_reads_ring_closed(struct FileReads *r);

static int RingMemory_init(RingMemory *self, PyObject *args, PyObject *kwds)
{
    unsigned long long cqes, writers, api;
    Py_ssize_t ncqes;
    if (!PyArg_ParseTuple(args, "KnKK", &cqes, &ncqes, &writers, &api))
        return -1;
    if (!cqes || ncqes <= 0 || !writers || !api) {
        PyErr_SetString(PyExc_ValueError, "RingMemory needs a CQE array, a writer table "
                        "and the writers' functions");
        return -1;
    }
    self->cqes = (const int64_t *)(uintptr_t)cqes;
    self->ncqes = ncqes;
    self->writers = (struct uio_writers *)(uintptr_t)writers;
    self->api = (const struct uio_writer_api *)(uintptr_t)api;
    self->owner = PyThread_get_thread_ident();
    return 0;
}

static PyObject *RingMemory_attach_buffers(RingMemory *self, PyObject *args)
{
    unsigned long long base;
    Py_ssize_t size, count;
    if (!PyArg_ParseTuple(args, "Knn", &base, &size, &count))
        return NULL;
    if (base && (size <= 0 || count <= 0)) {
        PyErr_SetString(PyExc_ValueError, "attach_buffers(base, size, count) needs size and count");
        return NULL;
    }
    self->buf_base = (const char *)(uintptr_t)base;
    self->buf_size = base ? size : 0;
    self->buf_count = base ? count : 0;
    Py_RETURN_NONE;
}

/* Drop the references the writers are done with (uio_write_ref's tokens). */
static void drop_released(RingMemory *m)
{
    void *tokens[64];
    unsigned n, i;
    if (m->writers == NULL || m->api == NULL)
        return;
    while ((n = m->api->take_released(m->writers, tokens, 64)) > 0)
        for (i = 0; i < n; i++)
            Py_DECREF((PyObject *)tokens[i]);
}

static PyObject *RingMemory_close(RingMemory *self, PyObject *unused)
{
    if (self->reads != NULL)
        file_reads_ring_closed(self->reads);
    drop_released(self);
    self->cqes = NULL;
    self->ncqes = 0;
    self->writers = NULL;
    self->api = NULL;
    self->buf_base = NULL;
    self->buf_size = self->buf_count = 0;
    Py_RETURN_NONE;
}

static PyObject *RingMemory_get_closed(RingMemory *self, void *c)
{
    return PyBool_FromLong(self->cqes == NULL);
}

static PyMethodDef RingMemory_methods[] = {
    {"attach_buffers", (PyCFunction)RingMemory_attach_buffers, METH_VARARGS,
     "attach_buffers(base, size, count): the provided buffers receive streams read; "
     "base 0 detaches them"},
    {"close", (PyCFunction)RingMemory_close, METH_NOARGS,
     "The memory is about to be freed: everything made on it raises from now on."},
    {NULL}
};

static PyGetSetDef RingMemory_getset[] = {
    {"closed", (getter)RingMemory_get_closed, NULL, "closed, or never initialised", NULL},
    {NULL}
};

static PyTypeObject RingMemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio._core._fastpath.RingMemory",
    .tp_doc = "RingMemory(cqes, ncqes, writers, write_fn): one Ring's C memory, until close()",
    .tp_basicsize = sizeof(RingMemory),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RingMemory_init,
    .tp_methods = RingMemory_methods,
    .tp_getset = RingMemory_getset,
};

/* The memory's state as an exception, or 0 when it may be used. */
static int memory_unusable(RingMemory *m)
{
    if (m == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "not initialised: __init__ was never called");
        return -1;
    }
    if (m->cqes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the ring is closed");
        return -1;
    }
    return 0;
}

/* -- Dispatcher ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    RingMemory *mem;
    PyObject *slots;          /* list: user_data -> Op */
    PyTypeObject *op_type;    /* Op, whose __slots__ offsets follow */
    Py_ssize_t off_kind, off_cancelled, off_handler, off_on_complete;
    long recv_stream;         /* OpKind.RECV_STREAM */
    Py_ssize_t failed;
} Dispatcher;

static PyObject *Dispatcher_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

/* vectorcall is set at creation, so a Dispatcher never initialised is
 * still called through it, and refuses (memory_unusable). */
static PyObject *Dispatcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Dispatcher *self = (Dispatcher *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = Dispatcher_vectorcall;
        self->failed = -1;
    }
    return (PyObject *)self;
}

static int Dispatcher_init(Dispatcher *self, PyObject *args, PyObject *kwds)
{
    RingMemory *mem;
    PyObject *slots;
    PyTypeObject *op_type;
    long recv_stream;
    if (!PyArg_ParseTuple(args, "O!O!O!l", &RingMemoryType, &mem, &PyList_Type, &slots,
                          &PyType_Type, &op_type, &recv_stream))
        return -1;
    if (slot_offset(op_type, "kind", &self->off_kind) ||
        slot_offset(op_type, "cancelled", &self->off_cancelled) ||
        slot_offset(op_type, "handler", &self->off_handler) ||
        slot_offset(op_type, "on_complete", &self->off_on_complete))
        return -1;
    Py_XSETREF(self->mem, (RingMemory *)Py_NewRef(mem));
    Py_XSETREF(self->slots, Py_NewRef(slots));
    Py_XSETREF(self->op_type, (PyTypeObject *)Py_NewRef(op_type));
    self->recv_stream = recv_stream;
    self->failed = -1;
    return 0;
}

/* The bytes of a receive stream that goes on, or NULL (no exception set)
 * when this CQE is not that case and on_complete must judge it. */
static inline PyObject *stream_bytes(Dispatcher *self, PyObject *op, int32_t res, int64_t word)
{
    uint32_t flags = (uint32_t)word;
    if (res <= 0 || !(flags & IORING_CQE_F_MORE) || SLOT(op, self->off_cancelled) != Py_False)
        return NULL;
    PyObject *kind = SLOT(op, self->off_kind);   /* an int, or an OpKind member */
    if (kind == NULL || !PyLong_Check(kind) || PyLong_AsLong(kind) != self->recv_stream
            || SLOT(op, self->off_handler) == NULL)
        return NULL;
    RingMemory *m = self->mem;
    Py_ssize_t bid = flags >> IORING_CQE_BUFFER_SHIFT;
    Py_ssize_t offset = (Py_ssize_t)((uint64_t)word >> UIO_CQE_OFFSET_SHIFT);
    if (bid >= m->buf_count || offset + res > m->buf_size)   /* none attached: count 0 */
        return NULL;
    return PyBytes_FromStringAndSize(m->buf_base + bid * m->buf_size + offset, res);
}

static PyObject *Dispatcher_call(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "dispatch(start, n)");
        return NULL;
    }
    /* __init__ sets mem and slots together; the GC's clear drops both. */
    if (memory_unusable(self->slots == NULL ? NULL : self->mem))
        return NULL;
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if ((i == -1 || n == -1) && PyErr_Occurred())
        return NULL;
    if (i < 0 || n > self->mem->ncqes) {
        PyErr_Format(PyExc_IndexError, "dispatch(%zd, %zd) outside the %zd CQEs the array holds",
                     i, n, self->mem->ncqes);
        return NULL;
    }
    /* A handler may close the loop, and so the ring: the array is read
     * through mem each time, and a closed one ends the batch. */
    for (; i < n && self->mem->cqes != NULL; i++) {
        const int64_t *cqe = self->mem->cqes + UIO_CQE_WORDS * i;
        int64_t user_data = cqe[0];
        int32_t res = (int32_t)cqe[1];
        int64_t flags = cqe[2];   /* the CQE's flags, and a buffer offset above them */
        if ((uint64_t)user_data == UIO_RELEASED_USER_DATA) {
            drop_released(self->mem);   /* (a Py_DECREF may run a finaliser: no error here) */
            continue;
        }
        if ((uint64_t)user_data & UIO_READ_TAG) {
            /* A file read, completed in C; only an exception that is not
             * an Exception (KeyboardInterrupt) comes back from it. */
            if (file_read_cqe(self->mem, (uint64_t)user_data, res) < 0) {
                self->failed = i;
                return NULL;
            }
            continue;
        }
        if (user_data < 0 || user_data >= PyList_GET_SIZE(self->slots)) {
            self->failed = i;
            PyErr_Format(PyExc_IndexError, "CQE for unknown user_data %lld", (long long)user_data);
            return NULL;
        }
        PyObject *op = PyList_GET_ITEM(self->slots, user_data);
        PyObject *result;
        Py_INCREF(op);
        if (!Py_IS_TYPE(op, self->op_type)) {
            Py_DECREF(op);
            self->failed = i;
            PyErr_SetString(PyExc_TypeError, "the op table holds something not an Op");
            return NULL;
        }
        PyObject *data = stream_bytes(self, op, res, flags);
        if (data != NULL) {
            /* Our references: the handler may replace op.handler, or drop
             * the last other reference to itself, while it runs. */
            PyObject *handler = SLOT(op, self->off_handler);
            Py_INCREF(handler);
            result = PyObject_Vectorcall(handler, &data, 1, NULL);
            Py_DECREF(handler);
            Py_DECREF(data);
        } else if (PyErr_Occurred()) {   /* out of memory for the bytes */
            result = NULL;
        } else {
            PyObject *on_complete = SLOT(op, self->off_on_complete);
            PyObject *call[3] = {op, PyLong_FromLong(res), PyLong_FromLongLong(flags)};
            if (on_complete == NULL || call[1] == NULL || call[2] == NULL) {
                if (on_complete == NULL && !PyErr_Occurred())
                    PyErr_SetString(PyExc_AttributeError, "op has no on_complete");
                result = NULL;
            } else {
                Py_INCREF(on_complete);
                result = PyObject_Vectorcall(on_complete, call, 3, NULL);
                Py_DECREF(on_complete);
            }
            Py_XDECREF(call[1]);
            Py_XDECREF(call[2]);
        }
        Py_DECREF(op);
        if (result == NULL) {
            self->failed = i;
            return NULL;
        }
        Py_DECREF(result);
    }
    Py_RETURN_NONE;
}

static PyObject *Dispatcher_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                       PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "dispatch() takes no keyword arguments");
        return NULL;
    }
    return Dispatcher_call((Dispatcher *)self, args, PyVectorcall_NARGS(nargsf));
}

static int Dispatcher_traverse(Dispatcher *self, visitproc visit, void *arg)
{
    Py_VISIT(self->mem);
    Py_VISIT(self->slots);
    Py_VISIT(self->op_type);
    return 0;
}

static int Dispatcher_clear(Dispatcher *self)
{
    Py_CLEAR(self->mem);
    Py_CLEAR(self->slots);
    Py_CLEAR(self->op_type);
    return 0;
}

static void Dispatcher_dealloc(Dispatcher *self)
{
    PyObject_GC_UnTrack(self);
    Dispatcher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Dispatcher_members[] = {
    {"failed", T_PYSSIZET, offsetof(Dispatcher, failed), READONLY,
     "index of the CQE whose handler raised last"},
    {NULL}
};

static PyTypeObject DispatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio._core._fastpath.Dispatcher",
    .tp_doc = "Dispatcher(memory, slots, op_type, recv_stream)",
    .tp_basicsize = sizeof(Dispatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Dispatcher_new,
    .tp_init = (initproc)Dispatcher_init,
    .tp_dealloc = (destructor)Dispatcher_dealloc,
    .tp_traverse = (traverseproc)Dispatcher_traverse,
    .tp_clear = (inquiry)Dispatcher_clear,
    .tp_call = PyVectorcall_Call,   /* calls with a tuple go the same way */
    .tp_vectorcall_offset = offsetof(Dispatcher, vectorcall),
    .tp_members = Dispatcher_members,
};

/* -- Writer --------------------------------------------------------------- */

/* Writes of at least this many bytes are sent from the caller's bytes
 * object rather than copied: below it, a copy into the writer's buffer
 * (which coalesces small writes into one send) costs less than holding a
 * reference and one more piece of a sendmsg. */
#define WRITE_REF_MIN 8192

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    RingMemory *mem;
    int wid;
    int released;
} Writer;

static PyObject *Writer_vectorcall(PyObject *obj, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    Writer *self = (Writer *)obj;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "write(data) takes one argument");
        return NULL;
    }
    PyObject *data = args[0];
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() wants bytes, not %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    RingMemory *m = self->mem;
    if (memory_unusable(m))
        return NULL;
    /* The loop thread may be inside uio_turn, changing this writer's buffers. */
    if (PyThread_get_thread_ident() != m->owner) {
        PyErr_SetString(PyExc_RuntimeError, "a send stream was written from a thread other "
                        "than its loop's; use loop.call_soon_threadsafe()");
        return NULL;
    }
    if (self->released)   /* the wid may be another stream's now */
        return PyLong_FromLong(-EBADF);
    if (PyBytes_GET_SIZE(data) < WRITE_REF_MIN)
        return PyLong_FromLongLong(m->api->write(m->writers, self->wid,
                                                 PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)));
    /* Large: sent from the bytes object itself (immutable), kept alive till then. */
    Py_INCREF(data);
    long long got = m->api->write_ref(m->writers, self->wid, PyBytes_AS_STRING(data),
                                      PyBytes_GET_SIZE(data), data);
    if (got < 0)
        Py_DECREF(data);   /* not taken */
    return PyLong_FromLongLong(got);
}

static PyObject *Writer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Writer *self = (Writer *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = Writer_vectorcall;   /* refuses until initialised */
    return (PyObject *)self;
}

static int Writer_init(PyObject *obj, PyObject *args, PyObject *kwds)
{
    Writer *self = (Writer *)obj;
    RingMemory *mem;
    int wid;
    if (!PyArg_ParseTuple(args, "O!i", &RingMemoryType, &mem, &wid))
        return -1;
    if (wid < 0) {
        PyErr_SetString(PyExc_ValueError, "Writer needs a writer id >= 0");
        return -1;
    }
    Py_XSETREF(self->mem, (RingMemory *)Py_NewRef(mem));
    self->wid = wid;
    self->released = 0;
    return 0;
}

static PyObject *Writer_release(PyObject *obj, PyObject *unused)
{
    ((Writer *)obj)->released = 1;
    Py_RETURN_NONE;
}

static void Writer_dealloc(Writer *self)
{
    Py_XDECREF(self->mem);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Writer_methods[] = {
    {"release", Writer_release, METH_NOARGS,
     "Stop writing: later calls return -EBADF and touch no C memory (the "
     "writer slot may serve another stream by then)."},
    {NULL}
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio._core._fastpath.Writer",
    .tp_doc = "Writer(memory, wid): w(data) queues bytes on a C send stream",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Writer_new,
    .tp_init = Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_call = PyVectorcall_Call,   /* calls with a tuple go the same way */
    .tp_vectorcall_offset = offsetof(Writer, vectorcall),
    .tp_methods = Writer_methods,
};

/* -- FileReads ------------------------------------------------------------ */

/* uio_prep_read (uring_helpers.c), reached through the address _liburing
 * gives for it: it takes a new SQE (flushing a full SQ first) and returns
 * 0, or -EBUSY when the kernel takes nothing more. */
typedef int (*uio_prep_read_fn)(void *ring, int fd, void *buf, unsigned len, uint64_t offset,
                                uint64_t user_data);

/* The most one read asks for: the kernel's MAX_RW_COUNT. A longer buffer
 * is filled by the continuation, as a short read is. */
#define UIO_READ_MAX 0x7ffff000

/* One read in flight: what its CQE needs, and the caller's buffer, held
 * (Py_buffer: referenced, and a bytearray cannot be resized) until the
 * read's final CQE -- also when nobody waits for it any more. */
struct uio_read {
    PyObject *target;         /* the future, or the handler; NULL: the slot is free */
    Py_buffer view;
    Py_ssize_t done;          /* bytes read so far */
    long long offset;         /* < 0: the file's own position */
    int fd;
    int is_future;
    Py_ssize_t next_free;
};

typedef struct FileReads {
    PyObject_HEAD
    RingMemory *mem;
    void *ring;               /* the struct io_uring, valid while mem is open */
    uio_prep_read_fn prep;
    PyObject *os_error;       /* errno -> OSError */
    PyObject *report;         /* report(what, exc): a handler's or future's Exception */
    PyObject *loop;           /* the asyncio loop futures belong to; NULL until bind() */
    PyObject *future_type;
    PyObject *future_kwargs;  /* {"loop": loop} */
    struct uio_read *slots;
    Py_ssize_t nslots, free_head, inflight;
    int closing;              /* the loop is closing: reads still complete, nobody hears */
    int leaked;               /* the ring closed with reads in flight: never release them */
} FileReads;

static PyObject *str_done, *str_set_result, *str_set_exception, *str_thread_id;
static PyObject *empty_tuple;

static int FileReads_init(FileReads *self, PyObject *args, PyObject *kwds)
{
    RingMemory *mem;
    unsigned long long ring, prep;
    PyObject *os_error, *report;
    if (!PyArg_ParseTuple(args, "O!KKOO", &RingMemoryType, &mem, &ring, &prep, &os_error,
                          &report))
        return -1;
    if (self->mem != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FileReads is initialised once");
        return -1;
    }
    if (memory_unusable(mem))
        return -1;
    if (mem->reads != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this ring has its FileReads already");
        return -1;
    }
    if (!ring || !prep || !PyCallable_Check(os_error) || !PyCallable_Check(report)) {
        PyErr_SetString(PyExc_ValueError, "FileReads(memory, ring, prep_read, os_error, report)");
        return -1;
    }
    self->mem = (RingMemory *)Py_NewRef(mem);
    self->ring = (void *)(uintptr_t)ring;
    self->prep = (uio_prep_read_fn)(uintptr_t)prep;
    self->os_error = Py_NewRef(os_error);
    self->report = Py_NewRef(report);
    self->free_head = -1;
    mem->reads = self;
    return 0;
}

/* A free slot's index (the table grows when none is), or -1 with an exception. */
static Py_ssize_t reads_slot(FileReads *self)
{
    if (self->free_head < 0) {
        Py_ssize_t n = self->nslots ? self->nslots * 2 : 64;
        if ((size_t)n > (size_t)PY_SSIZE_T_MAX / sizeof(struct uio_read)) {
            PyErr_NoMemory();
            return -1;
        }
        struct uio_read *slots = PyMem_Realloc(self->slots, n * sizeof(struct uio_read));
        if (slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = n - 1; i >= self->nslots; i--) {
            slots[i].target = NULL;
            slots[i].next_free = self->free_head;
            self->free_head = i;
        }
        self->slots = slots;
        self->nslots = n;
    }
    Py_ssize_t i = self->free_head;
    self->free_head = self->slots[i].next_free;
    return i;
}

static void reads_free(FileReads *self, Py_ssize_t i)
{
    self->slots[i].target = NULL;
    self->slots[i].next_free = self->free_head;
    self->free_head = i;
}

/* The SQE for what slot i still has to read: 0, or -errno. */
static int reads_submit(FileReads *self, Py_ssize_t i)
{
    struct uio_read *e = &self->slots[i];
    Py_ssize_t left = e->view.len - e->done;
    unsigned len = left > UIO_READ_MAX ? UIO_READ_MAX : (unsigned)left;
    uint64_t where = e->offset < 0 ? (uint64_t)-1 : (uint64_t)(e->offset + e->done);
    return self->prep(self->ring, e->fd, (char *)e->view.buf + e->done, len, where,
                      UIO_READ_TAG | (uint64_t)i);
}

/* The ring may be used from here: this thread is the ring's (or -1 with
 * RuntimeError). */
static int reads_usable(FileReads *self)
{
    if (memory_unusable(self->mem))
        return -1;
    if (PyThread_get_thread_ident() != self->mem->owner) {
        PyErr_SetString(PyExc_RuntimeError, "a file read was started from a thread other "
                        "than its loop's; use loop.call_soon_threadsafe()");
        return -1;
    }
    return 0;
}

/* Start reading into buf for target: 1 started, 0 buf is empty (nothing
 * started, nothing held), -1 an exception. */
static int reads_start(FileReads *self, PyObject *fd_obj, PyObject *buf, PyObject *offset_obj,
                       PyObject *target, int is_future)
{
    long fd = PyLong_AsLong(fd_obj);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < INT_MIN || fd > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "fd out of range");
        return -1;
    }
    long long offset = PyLong_AsLongLong(offset_obj);
    if (offset == -1 && PyErr_Occurred())
        return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0)
        return -1;
    if (view.len == 0) {
        PyBuffer_Release(&view);
        return 0;
    }
    Py_ssize_t i = reads_slot(self);
    if (i < 0) {
        PyBuffer_Release(&view);
        return -1;
    }
    struct uio_read *e = &self->slots[i];
    e->target = Py_NewRef(target);
    e->view = view;
    e->done = 0;
    e->offset = offset;
    e->fd = (int)fd;
    e->is_future = is_future;
    int rc = reads_submit(self, i);
    if (rc < 0) {
        Py_DECREF(target);
        reads_free(self, i);
        PyBuffer_Release(&view);
        errno = -rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->inflight++;
    return 1;
}

/* r.read(fd, buf, offset, handler) -> bool: the core's file_read. False:
 * buf is empty, nothing started (the caller reports 0). */
static PyObject *FileReads_read(FileReads *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "read(fd, buf, offset, handler)");
        return NULL;
    }
    if (reads_usable(self) < 0)
        return NULL;
    if (self->closing) {
        PyErr_SetString(PyExc_RuntimeError, "the loop is closing");
        return NULL;
    }
    int rc = reads_start(self, args[0], args[1], args[2], args[3], 0);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

/* r.future(fd, buf, offset) -> Future | None: the read as a future of the
 * bound asyncio loop; None when that loop is not the one running in this
 * thread (or the ring is closed): the caller takes the general path. */
static PyObject *FileReads_future(FileReads *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "future(fd, buf, offset)");
        return NULL;
    }
    RingMemory *m = self->mem;
    if (self->loop == NULL || self->closing || m == NULL || m->cqes == NULL
            || PyThread_get_thread_ident() != m->owner)
        Py_RETURN_NONE;
    /* Only one loop runs in a thread at a time: this one, when its
     * run_forever has recorded this thread. */
    PyObject *tid = PyObject_GetAttr(self->loop, str_thread_id);
    if (tid == NULL)
        return NULL;
    unsigned long ident = tid == Py_None ? 0 : PyLong_AsUnsignedLong(tid);
    Py_DECREF(tid);
    if (ident == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (ident != PyThread_get_thread_ident())
        Py_RETURN_NONE;
    PyObject *fut = PyObject_Call(self->future_type, empty_tuple, self->future_kwargs);
    if (fut == NULL)
        return NULL;
    int rc = reads_start(self, args[0], args[1], args[2], fut, 1);
    if (rc == 0) {   /* an empty buffer: 0 bytes, at once */
        PyObject *zero = PyLong_FromLong(0);
        PyObject *call[2] = {fut, zero};
        PyObject *res = PyObject_VectorcallMethod(str_set_result, call,
                                                  2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(zero);
        if (res == NULL)
            rc = -1;
        Py_XDECREF(res);
    }
    if (rc < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* r.bind(loop) -> bool: future() makes futures of ``loop`` from now on;
 * False when bound to another loop already. */
static PyObject *FileReads_bind(FileReads *self, PyObject *loop)
{
    if (self->loop != NULL)
        return PyBool_FromLong(self->loop == loop);
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return NULL;
    PyObject *future_type = PyObject_GetAttrString(asyncio, "Future");
    Py_DECREF(asyncio);
    if (future_type == NULL)
        return NULL;
    PyObject *kwargs = Py_BuildValue("{sO}", "loop", loop);
    if (kwargs == NULL) {
        Py_DECREF(future_type);
        return NULL;
    }
    self->future_type = future_type;
    self->future_kwargs = kwargs;
    self->loop = Py_NewRef(loop);
    Py_RETURN_TRUE;
}

/* The outcome to the reader: the future's result (unless it is done:
 * cancelled, nobody waits), or the handler called. An Exception this
 * raises goes to report(target, exc); -1 only for any other exception. */
static int reads_settle(FileReads *self, PyObject *target, int is_future, Py_ssize_t done,
                        int err)
{
    PyObject *value, *res = NULL;
    if (err) {
        PyObject *code = PyLong_FromLong(err);
        value = code == NULL ? NULL : PyObject_CallOneArg(self->os_error, code);
        Py_XDECREF(code);
    } else {
        value = PyLong_FromSsize_t(done);
    }
    if (value != NULL) {
        if (is_future) {
            PyObject *call[2] = {target, value};
            PyObject *is_done = PyObject_VectorcallMethod(
                str_done, call, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (is_done == Py_False)
                res = PyObject_VectorcallMethod(err ? str_set_exception : str_set_result, call,
                                                2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            else if (is_done != NULL)
                res = Py_NewRef(Py_None);
            Py_XDECREF(is_done);
        } else {
            res = PyObject_Vectorcall(target, &value, 1, NULL);
        }
        Py_DECREF(value);
    }
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *exc = raised_exception();
    PyObject *call[2] = {target, exc};
    res = self->report == NULL ? NULL : PyObject_Vectorcall(self->report, call, 2, NULL);
    if (res == NULL)
        PyErr_WriteUnraisable(target);
    Py_XDECREF(res);
    Py_XDECREF(exc);
    return 0;
}

/* A file read's CQE (user_data UIO_READ_TAG | slot). res: bytes read, 0 at
 * the end of the file, or -errno. A short read goes on from where it
 * stopped, until the buffer is full or the file ends. */
static int file_read_cqe(RingMemory *m, uint64_t user_data, int32_t res)
{
    FileReads *self = m->reads;
    /* Unsigned: a user_data with bit 62 set would be a negative index. */
    uint64_t i = user_data & ~UIO_READ_TAG;
    if (self == NULL || i >= (uint64_t)self->nslots || self->slots[i].target == NULL) {
        PyErr_Format(PyExc_IndexError, "CQE for unknown user_data %llu",
                     (unsigned long long)user_data);
        return -1;
    }
    struct uio_read *e = &self->slots[i];
    if (res > 0) {
        e->done += res;
        if (e->done < e->view.len) {
            int rc = reads_submit(self, i);
            if (rc == 0)
                return 0;
            res = rc;
        }
    }
    /* Everything out of the slot before any Python runs: a handler, or
     * the buffer's release, may start reads that move the table. */
    PyObject *target = e->target;
    Py_buffer view = e->view;
    Py_ssize_t done = e->done;
    int is_future = e->is_future;
    reads_free(self, i);
    self->inflight--;
    PyBuffer_Release(&view);
    Py_INCREF(self);   /* settling may drop the last other reference */
    int rc = self->closing ? 0 : reads_settle(self, target, is_future, done, res < 0 ? -res : 0);
    Py_DECREF(target);
    Py_DECREF(self);
    return rc;
}

/* The ring is closing (RingMemory.close): what is still in flight may be
 * written by the kernel later, so it is never released. */
static void file_reads_ring_closed(FileReads *self)
{
    if (self->inflight)
        self->leaked = 1;
    self->mem->reads = NULL;
}

/* r.close(): the loop is closing; the reads still in flight keep their
 * buffers until their CQEs, but no handler or future hears of them. */
static PyObject *FileReads_close(FileReads *self, PyObject *unused)
{
    self->closing = 1;
    Py_RETURN_NONE;
}

static PyObject *FileReads_get_inflight(FileReads *self, void *c)
{
    return PyLong_FromSsize_t(self->inflight);
}

static int FileReads_traverse(FileReads *self, visitproc visit, void *arg)
{
    /* Not the reads in flight: the kernel holds those, the collector must
     * never free them. */
    Py_VISIT(self->os_error);
    Py_VISIT(self->report);
    Py_VISIT(self->loop);
    Py_VISIT(self->future_type);
    Py_VISIT(self->future_kwargs);
    return 0;
}

static int FileReads_clear(FileReads *self)
{
    Py_CLEAR(self->os_error);
    Py_CLEAR(self->report);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->future_type);
    Py_CLEAR(self->future_kwargs);
    return 0;
}

static void FileReads_dealloc(FileReads *self)
{
    PyObject_GC_UnTrack(self);
    FileReads_clear(self);
    if (self->mem != NULL && self->mem->reads == self)
        self->mem->reads = NULL;
    /* Reads still in flight keep their buffers and targets for good: the
     * kernel may still write there. Only a table with none is freed. */
    if (self->inflight == 0 && !self->leaked)
        PyMem_Free(self->slots);
    Py_XDECREF(self->mem);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef FileReads_methods[] = {
    {"read", (PyCFunction)(void (*)(void))FileReads_read, METH_FASTCALL,
     "read(fd, buf, offset, handler) -> bool: read into buf from offset (< 0: the file's "
     "position) until it is full or the file ends; handler(count or OSError) once done. "
     "False: buf is empty, nothing started."},
    {"future", (PyCFunction)(void (*)(void))FileReads_future, METH_FASTCALL,
     "future(fd, buf, offset) -> Future | None: the same read as a future of the bound loop; "
     "None when that loop is not running in this thread."},
    {"bind", (PyCFunction)FileReads_bind, METH_O,
     "bind(loop) -> bool: future() makes futures of this asyncio loop (once)."},
    {"close", (PyCFunction)FileReads_close, METH_NOARGS,
     "The loop is closing: reads in flight keep their buffers until their CQEs, and "
     "nobody hears of them; no more start."},
    {NULL}
};

static PyGetSetDef FileReads_getset[] = {
    {"inflight", (getter)FileReads_get_inflight, NULL, "reads whose final CQE has not come",
     NULL},
    {NULL}
};

static PyTypeObject FileReadsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio._core._fastpath.FileReads",
    .tp_doc = "FileReads(memory, ring, prep_read, os_error, report): file reads prepared "
              "and completed in C",
    .tp_basicsize = sizeof(FileReads),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FileReads_init,
    .tp_dealloc = (destructor)FileReads_dealloc,
    .tp_traverse = (traverseproc)FileReads_traverse,
    .tp_clear = (inquiry)FileReads_clear,
    .tp_methods = FileReads_methods,
    .tp_getset = FileReads_getset,
};

/* -- Connection.write ------------------------------------------------------ */

static PyObject *python_write;   /* Connection.write as written in Python */
static PyObject *str_pause_writing;
static Py_ssize_t off_closing, off_eof, off_queue, off_write, off_high, off_paused_writing;

static PyObject *connection_write_c(PyObject *self, PyObject *data)
{
    PyObject *closing = SLOT(self, off_closing), *eof = SLOT(self, off_eof),
             *queue = SLOT(self, off_queue), *write = SLOT(self, off_write), *high;
    int plain = PyBytes_CheckExact(data) && closing == Py_False && write != NULL &&
                eof != NULL && PyLong_CheckExact(eof) && !PyObject_IsTrue(eof) &&
                queue != NULL && (queue == Py_None || PyObject_Size(queue) == 0);
    if (!plain) {
        PyErr_Clear();   /* (PyObject_Size of an odd queue: the Python write's to judge) */
        PyObject *args[2] = {self, data};
        return PyObject_Vectorcall(python_write, args, 2, NULL);
    }
    /* if self._write(data) > self._high and not self._paused_writing: */
    PyObject *level = PyObject_CallOneArg(write, data);
    if (level == NULL)
        return NULL;
    int over = (high = SLOT(self, off_high)) == NULL ? 0 : PyObject_RichCompareBool(level, high, Py_GT);
    Py_DECREF(level);
    if (over < 0)
        return NULL;
    if (over && SLOT(self, off_paused_writing) == Py_False)
        return PyObject_CallMethodNoArgs(self, str_pause_writing);
    Py_RETURN_NONE;
}

static PyMethodDef connection_write_def = {
    "write", connection_write_c, METH_O,
    "Queue ``data`` for sending, in order. Raises RuntimeError after close(); after the "
    "connection is lost, writes are dropped.",
};

static PyObject *connection_write(PyObject *module, PyObject *args)
{
    PyTypeObject *type;
    PyObject *write;
    if (!PyArg_ParseTuple(args, "O!O:connection_write", &PyType_Type, &type, &write))
        return NULL;
    if (slot_offset(type, "_closing", &off_closing) || slot_offset(type, "_eof", &off_eof) ||
        slot_offset(type, "_queue", &off_queue) || slot_offset(type, "_write", &off_write) ||
        slot_offset(type, "_high", &off_high) ||
        slot_offset(type, "_paused_writing", &off_paused_writing))
        return NULL;
    Py_XSETREF(python_write, Py_NewRef(write));
    return PyDescr_NewMethod(type, &connection_write_def);
}

static PyMethodDef module_methods[] = {
    {"connection_write", connection_write, METH_VARARGS,
     "connection_write(Connection, Connection.write) -> the method to replace write with"},
    {NULL}
};

/* -- module --------------------------------------------------------------- */

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uringio._core._fastpath",
    .m_doc = "The io_uring backend's per-message paths in C (see _build/_core/fastpath.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&RingMemoryType) < 0 || PyType_Ready(&DispatcherType) < 0
            || PyType_Ready(&WriterType) < 0 || PyType_Ready(&FileReadsType) < 0)
        return NULL;
    if ((str_done = PyUnicode_InternFromString("done")) == NULL ||
        (str_set_result = PyUnicode_InternFromString("set_result")) == NULL ||
        (str_set_exception = PyUnicode_InternFromString("set_exception")) == NULL ||
        (str_thread_id = PyUnicode_InternFromString("_thread_id")) == NULL ||
        (str_pause_writing = PyUnicode_InternFromString("_pause_writing")) == NULL ||
        (empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RingMemory", (PyObject *)&RingMemoryType) < 0 ||
        PyModule_AddObjectRef(m, "Dispatcher", (PyObject *)&DispatcherType) < 0 ||
        PyModule_AddObjectRef(m, "Writer", (PyObject *)&WriterType) < 0 ||
        PyModule_AddObjectRef(m, "FileReads", (PyObject *)&FileReadsType) < 0 ||
        PyModule_AddIntConstant(m, "WRITE_REF_MIN", WRITE_REF_MIN) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
