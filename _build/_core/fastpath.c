/*
 * uringio._core._fastpath: the two per-message paths of the io_uring backend, as
 * CPython C-API code.
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
 *     op.on_complete(op, res, flags), flags with that offset above bit 32. When a handler raises, the
 *     exception propagates and d.failed is the index of that CQE, so the
 *     caller can report it and go on from the next one.
 *
 * Writer(memory, wid)
 *     w(data) queues bytes ``data`` on C send stream ``wid``: one C call,
 *     returns what uio_write returns (bytes buffered, or -errno).
 *     w.release() ends that: later calls return -EBADF.
 *
 * Every type here checks that it was initialised: one made with __new__
 * alone raises when called, it never reads a NULL pointer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <structmember.h>
#include <pythread.h>
#include <liburing.h>   /* IORING_CQE_F_MORE, IORING_CQE_BUFFER_SHIFT */

#include "pyslots.h"
#include "uring_shared.h"

/* -- RingMemory ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    const int64_t *cqes;      /* UIO_CQE_WORDS per CQE; NULL: closed */
    Py_ssize_t ncqes;         /* how many CQEs the array holds */
    struct uio_writers *writers;
    uio_write_fn write;
    const char *buf_base;     /* provided buffers; NULL: none attached */
    Py_ssize_t buf_size, buf_count;
    unsigned long owner;      /* PyThread_get_thread_ident() of the ring's thread */
} RingMemory;

static int RingMemory_init(RingMemory *self, PyObject *args, PyObject *kwds)
{
    unsigned long long cqes, writers, write;
    Py_ssize_t ncqes;
    if (!PyArg_ParseTuple(args, "KnKK", &cqes, &ncqes, &writers, &write))
        return -1;
    if (!cqes || ncqes <= 0 || !writers || !write) {
        PyErr_SetString(PyExc_ValueError, "RingMemory needs a CQE array, a writer table "
                        "and a write function");
        return -1;
    }
    self->cqes = (const int64_t *)(uintptr_t)cqes;
    self->ncqes = ncqes;
    self->writers = (struct uio_writers *)(uintptr_t)writers;
    self->write = (uio_write_fn)(uintptr_t)write;
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

static PyObject *RingMemory_close(RingMemory *self, PyObject *unused)
{
    self->cqes = NULL;
    self->ncqes = 0;
    self->writers = NULL;
    self->write = NULL;
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
    return PyLong_FromLongLong(m->write(m->writers, self->wid, PyBytes_AS_STRING(data),
                                        PyBytes_GET_SIZE(data)));
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

/* -- module --------------------------------------------------------------- */

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uringio._core._fastpath",
    .m_doc = "The io_uring backend's per-message paths in C (see _build/_core/fastpath.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&RingMemoryType) < 0 || PyType_Ready(&DispatcherType) < 0
            || PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RingMemory", (PyObject *)&RingMemoryType) < 0 ||
        PyModule_AddObjectRef(m, "Dispatcher", (PyObject *)&DispatcherType) < 0 ||
        PyModule_AddObjectRef(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
