/*
 * uringio.aio._ready: asyncio's ready queue, its two per-message steps in C.
 *
 * Why: in a streams echo every message wakes a task. asyncio's C Future
 * schedules the wakeup with loop.call_soon(), which in Python makes an
 * events.Handle (a Python __init__), and the loop's turn runs it through
 * Handle._run (a Python frame around context.run). uvloop does both in C;
 * a profile of uringio's streams echo had them at about a twentieth of the
 * server's time. The handles made here are asyncio's own events.Handle,
 * their __slots__ written at the offsets their member descriptors hold
 * (pyslots.h), so everything else in asyncio sees what it always sees.
 *
 * Ready(ready, loop, handle_type, on_error)
 *     ready is the loop's deque of handles, handle_type asyncio's
 *     events.Handle.
 *     r(callback, *args, context=None) is call_soon without asyncio's
 *     debug-mode checks (the loop uses it only when not in debug mode and
 *     not closed): a Handle appended to the deque, and returned.
 *     r.run(n) pops and runs n entries: a handle (skipped when cancelled)
 *     in its context as Handle._run does; a (callback, args) tuple -- the
 *     core loop's own, which shares this queue (BaseLoop.host) -- as
 *     callback(*args). A callback that raises an Exception goes to
 *     on_error(entry, exc) and the next one runs; SystemExit and
 *     KeyboardInterrupt propagate (the entries not run stay queued).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pyslots.h"
#include "raised.h"

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *append;         /* ready.append */
    PyObject *popleft;        /* ready.popleft */
    PyObject *loop;
    PyTypeObject *handle_type;
    PyObject *on_error;
    Py_ssize_t off_callback, off_args, off_cancelled, off_loop, off_source_traceback,
        off_repr, off_context;
} Ready;

static PyObject *Ready_vectorcall(PyObject *, PyObject *const *, size_t, PyObject *);

static PyObject *Ready_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Ready *self = (Ready *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = Ready_vectorcall;
    return (PyObject *)self;
}

static int Ready_init(Ready *self, PyObject *args, PyObject *kwds)
{
    PyObject *ready, *loop, *on_error;
    PyTypeObject *handle_type;
    if (!PyArg_ParseTuple(args, "OOO!O", &ready, &loop, &PyType_Type, &handle_type, &on_error))
        return -1;
    if (slot_offset(handle_type, "_callback", &self->off_callback) ||
        slot_offset(handle_type, "_args", &self->off_args) ||
        slot_offset(handle_type, "_cancelled", &self->off_cancelled) ||
        slot_offset(handle_type, "_loop", &self->off_loop) ||
        slot_offset(handle_type, "_source_traceback", &self->off_source_traceback) ||
        slot_offset(handle_type, "_repr", &self->off_repr) ||
        slot_offset(handle_type, "_context", &self->off_context))
        return -1;
    PyObject *append = PyObject_GetAttrString(ready, "append");
    if (append == NULL)
        return -1;
    PyObject *popleft = PyObject_GetAttrString(ready, "popleft");
    if (popleft == NULL) {
        Py_DECREF(append);
        return -1;
    }
    Py_XSETREF(self->append, append);
    Py_XSETREF(self->popleft, popleft);
    Py_XSETREF(self->loop, Py_NewRef(loop));
    Py_XSETREF(self->handle_type, (PyTypeObject *)Py_NewRef(handle_type));
    Py_XSETREF(self->on_error, Py_NewRef(on_error));
    return 0;
}

static int Ready_traverse(Ready *self, visitproc visit, void *arg)
{
    Py_VISIT(self->append);
    Py_VISIT(self->popleft);
    Py_VISIT(self->loop);
    Py_VISIT(self->handle_type);
    Py_VISIT(self->on_error);
    return 0;
}

static int Ready_clear(Ready *self)
{
    Py_CLEAR(self->append);
    Py_CLEAR(self->popleft);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->handle_type);
    Py_CLEAR(self->on_error);
    return 0;
}

static void Ready_dealloc(Ready *self)
{
    PyObject_GC_UnTrack(self);
    Ready_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Ready_check(Ready *self)
{
    if (self->append == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Ready was not initialised");
        return -1;
    }
    return 0;
}

/* r(callback, *args, context=None): call_soon. */
static PyObject *Ready_vectorcall(PyObject *obj, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
{
    Ready *self = (Ready *)obj;
    if (Ready_check(self) < 0)
        return NULL;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_soon() needs a callback");
        return NULL;
    }
    PyObject *context = NULL;
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "context")) {
                PyErr_Format(PyExc_TypeError,
                             "call_soon() got an unexpected keyword argument %R", name);
                return NULL;
            }
            context = args[nargs + i];
        }
    }
    context = (context == NULL || context == Py_None) ? PyContext_CopyCurrent()
                                                      : Py_NewRef(context);
    if (context == NULL)
        return NULL;
    PyObject *cb_args = PyTuple_New(nargs - 1);
    if (cb_args == NULL) {
        Py_DECREF(context);
        return NULL;
    }
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(cb_args, i - 1, Py_NewRef(args[i]));
    PyObject *handle = self->handle_type->tp_alloc(self->handle_type, 0);
    if (handle == NULL) {
        Py_DECREF(context);
        Py_DECREF(cb_args);
        return NULL;
    }
    SLOT(handle, self->off_callback) = Py_NewRef(args[0]);
    SLOT(handle, self->off_args) = cb_args;
    SLOT(handle, self->off_cancelled) = Py_NewRef(Py_False);
    SLOT(handle, self->off_loop) = Py_NewRef(self->loop);
    SLOT(handle, self->off_source_traceback) = Py_NewRef(Py_None);
    SLOT(handle, self->off_repr) = Py_NewRef(Py_None);
    SLOT(handle, self->off_context) = context;
    PyObject *res = PyObject_CallOneArg(self->append, handle);
    if (res == NULL) {
        Py_DECREF(handle);
        return NULL;
    }
    Py_DECREF(res);
    return handle;
}

/* Run one handle, as events.Handle._run does; 0, or -1 with SystemExit or
 * KeyboardInterrupt (or a failing on_error) set. */
static int run_handle(Ready *self, PyObject *handle)
{
    PyObject *res;
    if (PyTuple_CheckExact(handle) && PyTuple_GET_SIZE(handle) == 2 &&
            PyTuple_Check(PyTuple_GET_ITEM(handle, 1))) {
        /* the core loop's (callback, args) */
        res = PyObject_Call(PyTuple_GET_ITEM(handle, 0), PyTuple_GET_ITEM(handle, 1), NULL);
    } else if (!PyObject_TypeCheck(handle, self->handle_type)) {
        res = PyObject_CallMethod(handle, "_run", NULL);   /* not one of asyncio's */
    } else {
        if (SLOT(handle, self->off_cancelled) == Py_True)
            return 0;
        PyObject *context = SLOT(handle, self->off_context);
        PyObject *callback = SLOT(handle, self->off_callback);
        PyObject *cb_args = SLOT(handle, self->off_args);
        if (context == NULL || callback == NULL || cb_args == NULL || !PyTuple_Check(cb_args)) {
            res = PyObject_CallMethod(handle, "_run", NULL);
        } else if (PyContext_Enter(context) < 0) {
            res = NULL;
        } else {
            res = PyObject_Call(callback, cb_args, NULL);
            if (PyContext_Exit(context) < 0)
                Py_CLEAR(res);
        }
    }
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    PyObject *exc = raised_exception();
    res = PyObject_CallFunctionObjArgs(self->on_error, handle, exc, NULL);
    Py_DECREF(exc);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

static PyObject *Ready_run(Ready *self, PyObject *arg)
{
    if (Ready_check(self) < 0)
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *handle = PyObject_CallNoArgs(self->popleft);
        if (handle == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_IndexError))
                return NULL;
            PyErr_Clear();   /* fewer than n: a callback emptied the queue */
            break;
        }
        int rc = run_handle(self, handle);
        Py_DECREF(handle);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef Ready_methods[] = {
    {"run", (PyCFunction)Ready_run, METH_O, "run(n): pop and run n ready handles"},
    {NULL}
};

static PyTypeObject ReadyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio.aio._ready.Ready",
    .tp_doc = "Ready(ready, loop, handle_type, on_error)",
    .tp_basicsize = sizeof(Ready),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Ready_new,
    .tp_init = (initproc)Ready_init,
    .tp_dealloc = (destructor)Ready_dealloc,
    .tp_traverse = (traverseproc)Ready_traverse,
    .tp_clear = (inquiry)Ready_clear,
    .tp_call = PyVectorcall_Call,   /* calls with a tuple go the same way */
    .tp_vectorcall_offset = offsetof(Ready, vectorcall),
    .tp_methods = Ready_methods,
};

static struct PyModuleDef ready_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uringio.aio._ready",
    .m_doc = "asyncio's ready queue, its per-message steps in C (see _build/aio/ready.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__ready(void)
{
    if (PyType_Ready(&ReadyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ready_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Ready", (PyObject *)&ReadyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
