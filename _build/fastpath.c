/*
 * uringio._fastpath: the two per-message paths of the io_uring backend, as
 * CPython C-API code.
 *
 * Why this is not cffi: a cffi call converts each argument through its type
 * machinery, about 30 ns apiece, and a Python loop over CQEs pays the
 * interpreter for every index and branch. Per 64-byte echo that was ~0.4 us of
 * the ~0.85 us of Python a message cost, on top of ~4.8 us of kernel work.
 * Here the same steps are plain C calls made through vectorcall.
 *
 * Nothing here knows io_uring. It is handed, as integer addresses, the CQE
 * array that _liburing's uio_turn() fills and the uio_write() function
 * pointer; the Python layer (proactor.py) keeps those alive.
 *
 * Dispatcher(cqes, slots, op_type, buf_base, buf_size, buf_count, recv_stream)
 *     d(start, n) dispatches CQEs start..n-1 of the array, each to its Op
 *     (slots[user_data]): a receive stream's bytes that go on
 *     (res > 0, IORING_CQE_F_MORE, not cancelled) are copied out of their
 *     provided buffer into a bytes object for op.handler(data); every other
 *     CQE goes to op.on_complete(op, res, flags). When a handler raises, the
 *     exception propagates and d.failed is the index of that CQE, so the
 *     caller can report it and go on from the next one.
 *
 * Writer(write_fn, ring, writers, wid)
 *     w(data) queues bytes ``data`` on C send stream ``wid``: one C call,
 *     returns what uio_write returns (bytes buffered, or -errno).
 *     w.release() ends that: later calls return -EBADF.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <structmember.h>

#include "pyslots.h"

#define CQE_F_MORE (1U << 1)      /* IORING_CQE_F_MORE */
#define CQE_BUFFER_SHIFT 16       /* IORING_CQE_BUFFER_SHIFT */

/* -- Dispatcher ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    const int64_t *cqes;      /* (user_data, res, flags) triples */
    PyObject *slots;          /* list: user_data -> Op */
    PyTypeObject *op_type;    /* Op, whose __slots__ offsets follow */
    Py_ssize_t off_kind, off_cancelled, off_handler, off_on_complete;
    const char *buf_base;
    Py_ssize_t buf_size, buf_count;
    long recv_stream;         /* OpKind.RECV_STREAM */
    Py_ssize_t failed;
} Dispatcher;

static PyObject *Dispatcher_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static int Dispatcher_init(Dispatcher *self, PyObject *args, PyObject *kwds)
{
    unsigned long long cqes, buf_base;
    PyObject *slots;
    PyTypeObject *op_type;
    Py_ssize_t buf_size, buf_count;
    long recv_stream;
    if (!PyArg_ParseTuple(args, "KO!O!Knnl", &cqes, &PyList_Type, &slots, &PyType_Type,
                          &op_type, &buf_base, &buf_size, &buf_count, &recv_stream))
        return -1;
    if (slot_offset(op_type, "kind", &self->off_kind) ||
        slot_offset(op_type, "cancelled", &self->off_cancelled) ||
        slot_offset(op_type, "handler", &self->off_handler) ||
        slot_offset(op_type, "on_complete", &self->off_on_complete))
        return -1;
    self->cqes = (const int64_t *)(uintptr_t)cqes;
    Py_INCREF(slots);
    Py_XSETREF(self->slots, slots);
    Py_INCREF(op_type);
    Py_XSETREF(self->op_type, op_type);
    self->buf_base = (const char *)(uintptr_t)buf_base;
    self->buf_size = buf_size;
    self->buf_count = buf_count;
    self->recv_stream = recv_stream;
    self->failed = -1;
    self->vectorcall = Dispatcher_vectorcall;
    return 0;
}

/* The bytes of a receive stream that goes on, or NULL (no exception set)
 * when this CQE is not that case and on_complete must judge it. */
static inline PyObject *stream_bytes(Dispatcher *self, PyObject *op, int32_t res, uint32_t flags)
{
    if (res <= 0 || !(flags & CQE_F_MORE) || SLOT(op, self->off_cancelled) != Py_False)
        return NULL;
    PyObject *kind = SLOT(op, self->off_kind);   /* an int, or an OpKind member */
    if (kind == NULL || !PyLong_Check(kind) || PyLong_AsLong(kind) != self->recv_stream
            || SLOT(op, self->off_handler) == NULL)
        return NULL;
    Py_ssize_t bid = flags >> CQE_BUFFER_SHIFT;
    if (bid >= self->buf_count || res > self->buf_size)
        return NULL;
    return PyBytes_FromStringAndSize(self->buf_base + bid * self->buf_size, res);
}

static PyObject *Dispatcher_call(Dispatcher *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "dispatch(start, n)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if ((i == -1 || n == -1) && PyErr_Occurred())
        return NULL;
    for (; i < n; i++) {
        const int64_t *cqe = self->cqes + 3 * i;
        int64_t user_data = cqe[0];
        int32_t res = (int32_t)cqe[1];
        uint32_t flags = (uint32_t)cqe[2];
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
            PyObject *call[3] = {op, PyLong_FromLong(res), PyLong_FromUnsignedLong(flags)};
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
    Py_VISIT(self->slots);
    Py_VISIT(self->op_type);
    return 0;
}

static int Dispatcher_clear(Dispatcher *self)
{
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
    .tp_name = "uringio._fastpath.Dispatcher",
    .tp_doc = "Dispatcher(cqes, slots, op_type, buf_base, buf_size, buf_count, recv_stream)",
    .tp_basicsize = sizeof(Dispatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Dispatcher_init,
    .tp_dealloc = (destructor)Dispatcher_dealloc,
    .tp_traverse = (traverseproc)Dispatcher_traverse,
    .tp_clear = (inquiry)Dispatcher_clear,
    .tp_call = PyVectorcall_Call,   /* calls with a tuple go the same way */
    .tp_vectorcall_offset = offsetof(Dispatcher, vectorcall),
    .tp_members = Dispatcher_members,
};

/* -- Writer --------------------------------------------------------------- */

typedef long long (*write_fn)(void *ring, void *writers, int wid, const char *data, size_t len);

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    write_fn write;
    void *ring;
    void *writers;
    int wid;
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
    if (self->writers == NULL)   /* released: the wid may be another stream's now */
        return PyLong_FromLong(-EBADF);
    return PyLong_FromLongLong(self->write(self->ring, self->writers, self->wid,
                                           PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)));
}

static int Writer_init(PyObject *obj, PyObject *args, PyObject *kwds)
{
    Writer *self = (Writer *)obj;
    unsigned long long fn, ring, writers;
    int wid;
    if (!PyArg_ParseTuple(args, "KKKi", &fn, &ring, &writers, &wid))
        return -1;
    if (!fn || !writers || wid < 0) {
        PyErr_SetString(PyExc_ValueError, "Writer needs a function, a writer table and a wid");
        return -1;
    }
    self->vectorcall = Writer_vectorcall;
    self->write = (write_fn)(uintptr_t)fn;
    self->ring = (void *)(uintptr_t)ring;
    self->writers = (void *)(uintptr_t)writers;
    self->wid = wid;
    return 0;
}

static PyObject *Writer_release(PyObject *obj, PyObject *unused)
{
    ((Writer *)obj)->writers = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Writer_methods[] = {
    {"release", Writer_release, METH_NOARGS,
     "Stop writing: later calls return -EBADF and touch no C memory (the "
     "writer slot may serve another stream by then, the ring may be gone)."},
    {NULL}
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio._fastpath.Writer",
    .tp_doc = "Writer(write_fn, ring, writers, wid): w(data) queues bytes on a C send stream",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew,
    .tp_init = Writer_init,
    .tp_call = PyVectorcall_Call,   /* calls with a tuple go the same way */
    .tp_vectorcall_offset = offsetof(Writer, vectorcall),
    .tp_methods = Writer_methods,
};

/* -- module --------------------------------------------------------------- */

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uringio._fastpath",
    .m_doc = "The io_uring backend's per-message paths in C (see _build/fastpath.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&DispatcherType) < 0 || PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Dispatcher", (PyObject *)&DispatcherType) < 0 ||
        PyModule_AddObjectRef(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
