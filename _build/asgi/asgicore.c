/*
 * uringio.asgi._asgicore: the per-request path of the ASGI server
 * (uringio/asgi/http.py), as CPython C-API code: llhttp's callbacks (the
 * parser is compiled in, _build/vendor/llhttp), the eager start of the
 * app, and the app's send().
 *
 * Why C: a profile of a raw ASGI app under wrk (py-spy, uring backend)
 * put 30% of the server's CPU in the head callbacks -- the URL split, the
 * header loop, the scope dict, the RequestCycle -- and 20% in send() and
 * the response head, against 17% for the kernel's whole TCP work. Why
 * llhttp itself rather than httptools: httptools calls back through
 * Python, a bytes object and a Cython call per piece of a head, 12% of
 * the server's own CPU once the rest was C.
 *
 * AsgiCore is the base class of http.HttpProtocol: data_received runs its
 * llhttp parser, whose callbacks are the C functions below. A head of the
 * common kind (an origin-form URL, no upgrade, no trusted proxy headers to
 * apply) becomes its scope and RequestCycle here; anything else goes to
 * the Python of http.py, which also does everything per connection:
 *     self._head_slow()          a head of any other kind (parsed_head()
 *                                says what llhttp read of it)
 *     self._input_failed(exc, data)   the parser stopped: a limit, an
 *                                upgrade, what did not parse, an error
 *     self.on_body(chunk)        a piece of a request's body
 *     self._new_request(cycle)   a request parsed: start or queue it
 *     self.response_done(cycle)  a response all written
 * and a limit broken is RequestLimit(status), raised in a callback.
 *
 * Cycle is the base class of http.RequestCycle: its send() writes the head
 * and body of a response in C, and returns a finished awaitable unless the
 * client is slow to read (then the protocol's drain()).
 *
 * http.py calls setup() once with what this code reads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <structmember.h>

#include "http_glue.h"
#include "pyslots.h"
#include "raised.h"

/* -- what setup() hands over ---------------------------------------------- */

static PyObject *asgi_version;    /* what each scope's "asgi" dict is a copy of */
static PyObject *status_lines;    /* {version: {status: b"HTTP/1.1 200 OK\r\n"}} */
static PyObject *unquote;         /* urllib.parse.unquote */
static PyTypeObject *task_type;   /* eager.EagerTask */
static Py_ssize_t task_begun;     /* ...its _begun slot */
static Py_ssize_t task_touched;   /* ...and its _touched slot */
static PyObject *current_tasks;   /* _asyncio._current_tasks: {loop: its running task} */
static PyObject *cancelled_error; /* asyncio.CancelledError */
static initproc future_init;      /* asyncio.Future's tp_init: Future.__init__ */
static PyObject *future_finish;   /* asyncio.Future.set_result */
static PyObject *init_kwargs;     /* {"loop": None}, the loop set in it for each call */
static PyObject *scope_template;  /* a scope's keys, in order, and its constant values */
enum { K_TYPE, K_ASGI, K_HTTP_VERSION, K_SERVER, K_CLIENT, K_SCHEME, K_METHOD, K_ROOT_PATH,
       K_PATH, K_RAW_PATH, K_QUERY_STRING, K_HEADERS, K_STATE, K_EXTENSIONS, N_SCOPE_KEYS };
static PyObject *scope_keys[N_SCOPE_KEYS];   /* ...its keys, in that order */

/* Interned names and constants, made at import. */
static PyObject *s_on_body, *s_head_slow, *s_input_failed, *s_new_request,
    *s_response_done, *s_drain, *s_type, *s_asgi, *s_http_version, *s_server, *s_client,
    *s_scheme, *s_method, *s_root_path, *s_path, *s_raw_path, *s_query_string, *s_headers,
    *s_state, *s_extensions, *s_http, *s_pathsend_key, *s_status, *s_body,
    *s_more_body, *s_response_start, *s_response_body, *s_send_slow, *s_receive, *s_send,
    *s_ended, *s_suspended, *s_wake, *s_update_reading, *s_loop, *s_upgrade, *b_empty,
    *empty_tuple;

/* What this code reads of Python, handed over once at import by http.py,
 * each by its name (as _asgicore.pyi declares them, which mypy holds
 * http.py's call to): a name that differs is a TypeError at import. */
static PyObject *setup(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", "asgi_version", "status_lines", "unquote", "task_type",
                             "current_tasks", "cancelled_error", "future_type", "future_finish",
                             "parser_error", "parser_upgrade", NULL};
    PyObject *limit, *version, *lines, *unq, *task, *tasks, *cancelled, *future, *finish;
    PyObject *error, *upgrade;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!OO!OOO!OOO", kwlist, &limit,
                                     &PyDict_Type, &version, &PyDict_Type, &lines, &unq,
                                     &PyType_Type, &task, &tasks, &cancelled, &PyType_Type,
                                     &future, &finish, &error, &upgrade))
        return NULL;
    if (slot_offset((PyTypeObject *)task, "_begun", &task_begun) ||
            slot_offset((PyTypeObject *)task, "_touched", &task_touched))
        return NULL;
    /* Called as a slot, Future.__init__ skips the wrapper that would pack
     * its keyword into a new dict per task. */
    future_init = ((PyTypeObject *)future)->tp_init;
    if (future_init == NULL) {
        PyErr_SetString(PyExc_TypeError, "the future type has no __init__");
        return NULL;
    }
    /* Every scope starts as a copy of this (a copy of a dict is a copy of
     * its table: no insertions, no resizing), its per-request values set
     * over the placeholders. */
    PyObject *template = PyDict_New();
    if (template == NULL)
        return NULL;
    PyObject *keys[N_SCOPE_KEYS] = {
        [K_TYPE] = s_type, [K_ASGI] = s_asgi, [K_HTTP_VERSION] = s_http_version,
        [K_SERVER] = s_server, [K_CLIENT] = s_client, [K_SCHEME] = s_scheme,
        [K_METHOD] = s_method, [K_ROOT_PATH] = s_root_path, [K_PATH] = s_path,
        [K_RAW_PATH] = s_raw_path, [K_QUERY_STRING] = s_query_string, [K_HEADERS] = s_headers,
        [K_STATE] = s_state, [K_EXTENSIONS] = s_extensions};
    for (int i = 0; i < N_SCOPE_KEYS; i++) {
        scope_keys[i] = keys[i];
        PyObject *value = i == K_TYPE || i == K_SCHEME ? s_http : Py_None;
        if (PyDict_SetItem(template, keys[i], value)) {
            Py_DECREF(template);
            return NULL;
        }
    }
    Py_XSETREF(scope_template, template);
    Py_XSETREF(future_finish, Py_NewRef(finish));
    Py_XSETREF(parser_error, Py_NewRef(error));
    Py_XSETREF(parser_upgrade, Py_NewRef(upgrade));
    Py_XSETREF(limit_type, Py_NewRef(limit));
    Py_XSETREF(asgi_version, Py_NewRef(version));
    Py_XSETREF(status_lines, Py_NewRef(lines));
    Py_XSETREF(unquote, Py_NewRef(unq));
    Py_XSETREF(task_type, (PyTypeObject *)Py_NewRef(task));
    /* Without the C module's table of running tasks, no eager start. */
    Py_XSETREF(current_tasks, PyDict_CheckExact(tasks) ? Py_NewRef(tasks) : NULL);
    Py_XSETREF(cancelled_error, Py_NewRef(cancelled));
    Py_RETURN_NONE;
}

static double monotonic(void)
{
    struct timespec ts;
    /* The clock of time.monotonic() (loop.time(), which the sweep reads),
     * at its last tick: a deadline set from it falls due at most a tick
     * (1-4 ms) early, and reading it costs a load, not a timer read --
     * twice a request, it was 2% of a request's CPU. */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* -- Cycle ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *proto;       /* the HttpProtocol */
    PyObject *scope;
    PyObject *body;        /* bytearray: received, not yet handed to the app */
    PyObject *waiter;      /* the future receive() waits on, or None */
    PyObject *status;      /* the response's, from http.response.start */
    PyObject *headers;     /* ...its headers; None once the head is written */
    PyObject *version;     /* the request's HTTP version (str): the response's, whatever
                            * the app does to its scope */
    Py_ssize_t received;   /* body bytes so far */
    Py_ssize_t sent;       /* response body bytes written (the access log's {bytes}) */
    char keep_alive, expect_100, more_body, body_done, disconnected, response_started,
        response_complete, chunked, head_only;
} Cycle;

#define CYCLE_OBJECTS(X) X(proto) X(scope) X(body) X(waiter) X(status) X(headers) X(version)

static int Cycle_traverse(Cycle *self, visitproc visit, void *arg)
{
#define VISIT_FIELD(field) Py_VISIT(self->field);
    CYCLE_OBJECTS(VISIT_FIELD)
#undef VISIT_FIELD
    return 0;
}

static int Cycle_clear(Cycle *self)
{
#define CLEAR_FIELD(field) Py_CLEAR(self->field);
    CYCLE_OBJECTS(CLEAR_FIELD)
#undef CLEAR_FIELD
    return 0;
}

static void Cycle_dealloc(Cycle *self)
{
    PyObject_GC_UnTrack(self);
    Cycle_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ``self``'s state as a new request's: a cycle just allocated, or the
 * last request's when nothing but its connection holds it (head_complete).
 * 0, or -1. */
static int cycle_init(Cycle *self, PyObject *proto, PyObject *scope, PyObject *version,
                      int keep_alive, int expect_100, int head_only)
{
    PyObject *body = self->body;
    if (body == NULL || !PyByteArray_CheckExact(body) || PyByteArray_GET_SIZE(body) != 0 ||
            Py_REFCNT(body) != 1) {
        if ((body = PyByteArray_FromStringAndSize(NULL, 0)) == NULL)
            return -1;
        Py_XSETREF(self->body, body);
    }
    Py_XSETREF(self->version, Py_NewRef(version));
    Py_XSETREF(self->proto, Py_NewRef(proto));
    Py_XSETREF(self->scope, Py_NewRef(scope));
    Py_XSETREF(self->waiter, Py_NewRef(Py_None));
    Py_XSETREF(self->status, PyLong_FromLong(0));
    Py_XSETREF(self->headers, PyTuple_New(0));
    if (self->status == NULL || self->headers == NULL)
        return -1;
    self->received = self->sent = 0;
    self->keep_alive = (char)keep_alive;
    self->expect_100 = (char)expect_100;
    self->more_body = 1;
    self->body_done = self->disconnected = self->response_started = self->response_complete =
        self->chunked = 0;
    self->head_only = (char)head_only;
    return 0;
}

/* A new cycle of ``type`` (a new reference). */
static PyObject *cycle_make(PyTypeObject *type, PyObject *proto, PyObject *scope,
                            PyObject *version, int keep_alive, int expect_100, int head_only)
{
    Cycle *self = (Cycle *)type->tp_alloc(type, 0);
    if (self != NULL &&
            cycle_init(self, proto, scope, version, keep_alive, expect_100, head_only))
        Py_CLEAR(self);
    return (PyObject *)self;
}

static PyObject *Cycle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    /* RequestCycle(proto, scope, keep_alive, expect_100): the Python path's */
    static char *kwlist[] = {"proto", "scope", "keep_alive", "expect_100", NULL};
    PyObject *proto, *scope;
    int keep_alive, expect_100;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!pp", kwlist, &proto, &PyDict_Type, &scope,
                                     &keep_alive, &expect_100))
        return NULL;
    PyObject *method = PyDict_GetItemWithError(scope, s_method), *version = NULL;
    if ((method == NULL || (version = PyDict_GetItemWithError(scope, s_http_version)) == NULL) &&
            PyErr_Occurred())
        return NULL;
    int head_only = method != NULL && PyUnicode_Check(method) &&
                    PyUnicode_CompareWithASCIIString(method, "HEAD") == 0;
    return cycle_make(type, proto, scope, version ? version : s_v11, keep_alive, expect_100,
                      head_only);
}

/* -- a finished awaitable -------------------------------------------------- */

/* What send() returns when nothing needs waiting for: ``await`` on it
 * returns None at once, with no coroutine frame, future or loop turn. One
 * object serves every send: it holds no state. */
typedef struct {
    PyObject_HEAD
} Done;

static PyObject *Done_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *Done_next(PyObject *self)
{
    return NULL;   /* StopIteration, value None */
}

static PyObject *Done_send(PyObject *self, PyObject *value)
{
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

static PyObject *Done_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* Nothing to throw into: the exception is raised where the await is. */
    if (nargs == 1 && PyExceptionInstance_Check(args[0])) {
        PyErr_SetObject((PyObject *)Py_TYPE(args[0]), args[0]);
    } else if (nargs >= 1 && PyExceptionClass_Check(args[0])) {
        PyErr_SetObject(args[0], nargs >= 2 ? args[1] : NULL);
    } else {
        PyErr_SetString(PyExc_TypeError, "throw() wants an exception");
    }
    return NULL;
}

static PyObject *Done_close(PyObject *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyAsyncMethods Done_async = {.am_await = Done_await};

static PyMethodDef Done_methods[] = {
    {"send", (PyCFunction)Done_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))Done_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)Done_close, METH_NOARGS, NULL},
    {NULL}
};

static PyTypeObject DoneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio.asgi._asgicore.Done",
    .tp_doc = "An awaitable already finished, with None.",
    .tp_basicsize = sizeof(Done),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_async = &Done_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = Done_next,
    .tp_methods = Done_methods,
};

static PyObject *done;   /* the one Done */

/* -- AsgiCore -------------------------------------------------------------- */

static PyTypeObject AsgiCoreType, CycleType;

typedef struct {
    PyObject_HEAD
    llhttp_t parser;           /* its data: this AsgiCore */
    HeadParts parts;           /* the pieces of a head, as they arrive */
    PyObject *url;             /* the request target (bytes) */
    PyObject *headers;         /* [(lower-case name, value)] so far */
    PyObject *cycle;           /* the request being answered, or None */
    PyObject *parsing;         /* the request whose body arrives now, or None */
    PyObject *sockname, *client;   /* the scope's "server" and "client" */
    PyObject *scheme;          /* the scope's "scheme": "http", or "https" over TLS */
    PyObject *root_path;       /* str */
    PyObject *state;           /* the lifespan state: each scope gets a copy */
    PyObject *transport;
    PyObject *write;           /* transport.write */
    PyObject *cycle_type;      /* http.RequestCycle */
    PyObject *date_line;       /* [b"date: ...\r\nserver: uringio\r\n"], the sweep's */
    PyObject *pipeline;        /* deque: requests parsed, waiting their turn */
    PyObject *loop;
    PyObject *app;             /* the app the C path starts, or None: http.py's start() */
    PyObject *spare_task;      /* the last request's EagerTask, for the next, or NULL */
    PyObject *spare_receive, *spare_send;   /* ...its receive and send, unbound, or NULL */
    double keep_alive;         /* the idle timeout */
    int pending_error;         /* a status to answer once the response in flight is out */
    char reading_paused, client_eof, access_log;
    double deadline;           /* when the timeout falls due (monotonic), 0: none */
    double header_timeout;
    Py_ssize_t head_bytes, max_head, max_body;
    char deadline_head;        /* the deadline is the head's (408), else idle */
    char slow_head;            /* the head needs http.py's Python (_head_slow) */
    char expect_100;
    char body_follows;         /* a Content-Length over 0 or a Transfer-Encoding */
    char closing;
    char write_paused;
    char trust_forwarded;      /* the peer is a trusted proxy: its X-Forwarded-* count */
    PyObject *chunk;           /* borrowed: the bytes data_received parses, or NULL */
} AsgiCore;

#define CORE_OBJECTS(X) X(url) HEAD_PARTS_FIELDS(X) \
    X(headers) X(cycle) X(parsing) X(sockname) X(client) X(scheme) X(root_path) X(state) \
    X(transport) \
    X(write) X(cycle_type) X(date_line) \
    X(pipeline) X(loop) X(app) X(spare_task) X(spare_receive) X(spare_send)

static llhttp_settings_t settings;   /* the callbacks below (defined after them) */

static PyObject *AsgiCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    AsgiCore *self = (AsgiCore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    llhttp_init(&self->parser, HTTP_REQUEST, &settings);
    self->parser.data = self;
    self->url = Py_NewRef(b_empty);
    self->headers = PyList_New(0);
    self->cycle = Py_NewRef(Py_None);
    self->parsing = Py_NewRef(Py_None);
    self->sockname = Py_NewRef(Py_None);
    self->client = Py_NewRef(Py_None);
    self->scheme = Py_NewRef(s_http);
    self->transport = Py_NewRef(Py_None);
    self->root_path = PyUnicode_New(0, 0);
    self->state = PyDict_New();
    self->date_line = PyList_New(0);
    if (self->headers == NULL || self->root_path == NULL || self->state == NULL ||
        self->date_line == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->max_head = 64 * 1024;
    self->max_body = (Py_ssize_t)1 << 30;
    self->header_timeout = 10.0;
    self->keep_alive = 5.0;
    return (PyObject *)self;
}

static int AsgiCore_traverse(AsgiCore *self, visitproc visit, void *arg)
{
#define VISIT_FIELD(field) Py_VISIT(self->field);
    CORE_OBJECTS(VISIT_FIELD)
#undef VISIT_FIELD
    return 0;
}

static int AsgiCore_clear(AsgiCore *self)
{
#define CLEAR_FIELD(field) Py_CLEAR(self->field);
    CORE_OBJECTS(CLEAR_FIELD)
#undef CLEAR_FIELD
    return 0;
}

static void AsgiCore_dealloc(AsgiCore *self)
{
    PyObject_GC_UnTrack(self);
    AsgiCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* -- the head, from llhttp ------------------------------------------------- */

#define CORE(parser) ((AsgiCore *)(parser)->data)

/* Each callback returns 0, or -1 with the exception set: llhttp stops, and
 * data_received hands the exception to http.py. */

static int head_begins(llhttp_t *parser)
{
    AsgiCore *self = CORE(parser);
    if (PyList_GET_SIZE(self->headers)) {
        PyObject *fresh = PyList_New(0);
        if (fresh == NULL)
            return -1;
        Py_SETREF(self->headers, fresh);
    }
    self->head_bytes = 0;
    head_parts_begin(&self->parts);
    self->slow_head = self->expect_100 = self->body_follows = 0;
    self->deadline = monotonic() + self->header_timeout;
    self->deadline_head = 1;
    return 0;
}

/* A piece of the head arrived: within the limit on a head's size? */
static int head_grows(AsgiCore *self, size_t len, int status)
{
    self->head_bytes += (Py_ssize_t)len;
    if (self->head_bytes <= self->max_head)
        return 0;
    raise_limit(status);
    return -1;
}

static int url_piece(llhttp_t *parser, const char *at, size_t len)
{
    AsgiCore *self = CORE(parser);
    if (head_grows(self, len, self->parts.url.len + (Py_ssize_t)len > self->max_head ? 414 : 431))
        return -1;
    return span_add(&self->parts.url, at, len);
}

static int url_complete(llhttp_t *parser)
{
    AsgiCore *self = CORE(parser);
    return take_url(&self->parts, &self->url);
}

static int name_piece(llhttp_t *parser, const char *at, size_t len)
{
    AsgiCore *self = CORE(parser);
    return head_grows(self, len, 431) ? -1 : span_add(&self->parts.name, at, len);
}

static int value_piece(llhttp_t *parser, const char *at, size_t len)
{
    AsgiCore *self = CORE(parser);
    return head_grows(self, len, 431) ? -1 : span_add(&self->parts.value, at, len);
}

/* A header is complete: its name in lower case (a common one made once),
 * what the request's handling depends on noted, the pair appended. */
static int header_complete(llhttp_t *parser)
{
    AsgiCore *self = CORE(parser);
    PyObject *name, *value;
    int common;
    if (head_grows(self, 4, 431) || take_header(&self->parts, &name, &value, &common))
        return -1;
    switch (common) {
    case H_CONTENT_LENGTH: {
        long long n = content_length(value, self->max_body);
        if (n < 0) {
            Py_DECREF(name);
            Py_DECREF(value);
            raise_limit(n == -2 ? 413 : 400);   /* refused before a byte is read */
            return -1;
        }
        self->body_follows |= n > 0;
        break;
    }
    case H_TRANSFER_ENCODING:
        self->body_follows = 1;
        break;
    case H_UPGRADE:
        self->slow_head = 1;
        break;
    case H_HOST:
        self->parts.hosts++;
        break;
    case H_X_FORWARDED_FOR:
    case H_X_FORWARDED_PROTO:
        self->slow_head |= self->trust_forwarded;   /* _head_slow applies them */
        break;
    case H_EXPECT:
        if (PyBytes_GET_SIZE(value) == 12 &&
                strncasecmp(PyBytes_AS_STRING(value), "100-continue", 12) == 0)
            self->expect_100 = 1;
        break;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(name);
        Py_DECREF(value);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value);
    int failed = PyList_Append(self->headers, pair);
    Py_DECREF(pair);
    return failed ? -1 : 0;
}

static int head_complete(AsgiCore *self);
static int body_complete(AsgiCore *self);

static int headers_complete(llhttp_t *parser)
{
    AsgiCore *self = CORE(parser);
    if (head_complete(self))
        return -1;
    if (!parser->upgrade)
        return 0;
    /* The WebSocket upgrade taken (_head_slow set self.upgrade) has no body
     * here: llhttp stops after its head (HPE_PAUSED_UPGRADE), and
     * data_received says where. Any other upgrade is a request like any
     * other (RFC 9110 §7.8): its body is read, and llhttp pauses after it. */
    PyObject *taken = PyObject_GetAttr((PyObject *)self, s_upgrade);
    if (taken == NULL)
        return -1;
    int skip_body = taken != Py_None;
    Py_DECREF(taken);
    return skip_body;
}

static int body_piece(llhttp_t *parser, const char *at, size_t len)
{
    AsgiCore *self = CORE(parser);
    /* A piece that is the whole of what was received (a large body's
     * every chunk but the first) goes on as that same bytes object, not a
     * copy of it: bytes are immutable, and nothing reuses them. */
    PyObject *chunk = self->chunk;
    PyObject *body = chunk != NULL && PyBytes_CheckExact(chunk) && at == PyBytes_AS_STRING(chunk)
                     && (Py_ssize_t)len == PyBytes_GET_SIZE(chunk)
                     ? Py_NewRef(chunk) : PyBytes_FromStringAndSize(at, (Py_ssize_t)len);
    PyObject *got = NULL;
    if (body != NULL)
        got = call_method1((PyObject *)self, s_on_body, body);
    Py_XDECREF(body);
    Py_XDECREF(got);
    return got == NULL ? -1 : 0;
}

static int extension_piece(llhttp_t *parser, const char *at, size_t len)
{
    return extension_grows(&CORE(parser)->parts, len);
}

static int message_complete(llhttp_t *parser)
{
    return body_complete(CORE(parser));
}

static llhttp_settings_t settings = PATH_CALLBACKS;

/* Parse a chunk: callbacks above as llhttp reaches them; what stops the
 * parser (parse_chunk says what) goes to http.py's _input_failed(exc,
 * data). */
static PyObject *AsgiCore_data_received(AsgiCore *self, PyObject *data)
{
    PyObject *stopped, *outer = self->chunk;
    self->chunk = data;
    int parsed = parse_chunk(&self->parser, &self->parts, data, &stopped);
    self->chunk = outer;
    switch (parsed) {
    case 0:
        Py_RETURN_NONE;
    case -1:
        return NULL;
    }
    PyObject *args[3] = {(PyObject *)self, stopped, data};
    PyObject *got = PyObject_VectorcallMethod(s_input_failed, args,
                                              3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(stopped);
    return got;
}

/* What _head_slow reads of a head llhttp parsed: (http_version, method,
 * upgrade, keep_alive). */
static PyObject *AsgiCore_parsed_head(AsgiCore *self, PyObject *unused)
{
    llhttp_t *parser = &self->parser;
    const char *method = llhttp_method_name((llhttp_method_t)parser->method);
    PyObject *name = method_name(method, (Py_ssize_t)strlen(method), NULL);
    if (name == NULL)
        return NULL;
    return Py_BuildValue("(NNOO)", http_version(parser), name,
                         parser->upgrade ? Py_True : Py_False,
                         llhttp_should_keep_alive(parser) ? Py_True : Py_False);
}

/* A scope's "state", as new as the copy of the lifespan state it would get? */
static int state_as_new(AsgiCore *self, PyObject *state)
{
    return PyDict_GET_SIZE(self->state) == 0 && PyDict_CheckExact(state) &&
           PyDict_GET_SIZE(state) == 0 && Py_REFCNT(state) == 1;
}

/* ...its "extensions", as new as {"http.response.pathsend": {}}? */
static int extensions_as_new(PyObject *extensions)
{
    if (!PyDict_CheckExact(extensions) || PyDict_GET_SIZE(extensions) != 1 ||
            Py_REFCNT(extensions) != 1)
        return 0;
    PyObject *pathsend = PyDict_GetItemWithError(extensions, s_pathsend_key);
    PyErr_Clear();
    return pathsend != NULL && PyDict_CheckExact(pathsend) && PyDict_GET_SIZE(pathsend) == 0 &&
           Py_REFCNT(pathsend) == 1;
}

static PyObject *new_extensions(void)
{
    PyObject *pathsend = PyDict_New(), *extensions = pathsend ? PyDict_New() : NULL;
    if (extensions != NULL && PyDict_SetItem(extensions, s_pathsend_key, pathsend))
        Py_CLEAR(extensions);
    Py_XDECREF(pathsend);
    return extensions;
}

/* ...its "asgi", as new as a copy of asgi_version? */
static int asgi_as_new(PyObject *asgi)
{
    if (!PyDict_CheckExact(asgi) || Py_REFCNT(asgi) != 1 ||
            PyDict_GET_SIZE(asgi) != PyDict_GET_SIZE(asgi_version))
        return 0;
    /* (the keys of asgi_version's copies are its own key objects) */
    Py_ssize_t pos = 0, at = 0;
    PyObject *key, *value, *own_key, *own_value;
    while (PyDict_Next(asgi, &pos, &key, &value))
        if (!PyDict_Next(asgi_version, &at, &own_key, &own_value) || key != own_key ||
                value != own_value)
            return 0;
    return 1;
}

/* ``scope`` (a dict) with ``values`` (the template's order; for asgi, state
 * and extensions: new ones) set over what differs: 0, or -1. */
static int fill_scope(AsgiCore *self, PyObject *scope, PyObject **values, unsigned differ)
{
    for (int i = 0; i < N_SCOPE_KEYS; i++) {
        if (!(differ & (1u << i)))
            continue;
        PyObject *value = i == K_ASGI ? PyDict_Copy(asgi_version) :
                          i == K_STATE ? PyDict_Copy(self->state) :
                          i == K_EXTENSIONS ? new_extensions() : Py_NewRef(values[i]);
        if (value == NULL)
            return -1;
        int failed = PyDict_SetItem(scope, scope_keys[i], value);
        Py_DECREF(value);
        if (failed)
            return -1;
    }
    return 0;
}

/* Which of ``last``'s values differ from ``values`` (a bit per key), when
 * the last request's scope (its cycle free: head_complete) can be the next
 * one's: nothing but its cycle holds it, and its keys are the template's,
 * in order (none added, removed or moved); else -1. To the app it is as
 * new as a copy of the template -- what it could have done to it is undone
 * here -- and a request saves the dicts of a scope. */
static long long scope_reuse(AsgiCore *self, PyObject *last, PyObject **values)
{
    if (Py_REFCNT(last) != 1 || !PyDict_CheckExact(last) || PyDict_GET_SIZE(last) != N_SCOPE_KEYS)
        return -1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    unsigned differ = 0;
    for (int i = 0; PyDict_Next(last, &pos, &key, &value); i++) {
        if (key != scope_keys[i])
            return -1;
        if (i == K_ASGI ? !asgi_as_new(value) : i == K_STATE ? !state_as_new(self, value) :
                i == K_EXTENSIONS ? !extensions_as_new(value) : value != values[i])
            differ |= 1u << i;
    }
    return differ;
}

/* The scope of an origin-form request (a new reference), made over from
 * ``last``'s when it can be (a free cycle, or NULL), or NULL with no
 * exception: not one for this path. */
static PyObject *make_scope(AsgiCore *self, PyObject *method, PyObject *version, Cycle *last)
{
    const char *url = PyBytes_AS_STRING(self->url);
    Py_ssize_t size = PyBytes_GET_SIZE(self->url), path_end, query_end;
    if (size == 0 || url[0] != '/')
        return NULL;   /* absolute-form, asterisk-form: httptools.parse_url's */
    const char *mark = memchr(url, '?', size), *hash = memchr(url, '#', size);
    query_end = hash ? hash - url : size;
    path_end = mark && mark - url < query_end ? mark - url : query_end;
    PyObject *raw_path = NULL, *path = NULL, *query = NULL, *scope = NULL;
    if (path_end == size)
        raw_path = Py_NewRef(self->url);
    else if ((raw_path = PyBytes_FromStringAndSize(url, path_end)) == NULL)
        return NULL;
    if (path_end == query_end)
        query = Py_NewRef(b_empty);
    else if ((query = PyBytes_FromStringAndSize(url + path_end + 1, query_end - path_end - 1)) == NULL)
        goto fail;
    path = PyUnicode_DecodeLatin1(url, path_end, NULL);
    if (path != NULL && memchr(url, '%', path_end) != NULL)
        Py_SETREF(path, PyObject_CallOneArg(unquote, path));
    if (path != NULL && PyUnicode_GET_LENGTH(self->root_path))
        Py_SETREF(path, PyUnicode_Concat(self->root_path, path));
    if (path == NULL)
        goto fail;
    PyObject *values[N_SCOPE_KEYS] = {
        [K_TYPE] = s_http, [K_HTTP_VERSION] = version,
        [K_SERVER] = self->sockname, [K_CLIENT] = self->client, [K_SCHEME] = self->scheme,
        [K_METHOD] = method, [K_ROOT_PATH] = self->root_path, [K_PATH] = path,
        [K_RAW_PATH] = raw_path, [K_QUERY_STRING] = query, [K_HEADERS] = self->headers};
    long long differ = -1;
    if (last != NULL && (differ = scope_reuse(self, last->scope, values)) >= 0) {
        scope = Py_NewRef(last->scope);   /* (its request goes now) */
    } else {
        /* A copy of the template, its constant values set: a copy of a
         * dict is a copy of its table, no insertions, no resizing. */
        if ((scope = PyDict_Copy(scope_template)) == NULL)
            goto fail;
        differ = ~((1u << K_TYPE) | (self->scheme == s_http ? 1u << K_SCHEME : 0u));
    }
    if (fill_scope(self, scope, values, (unsigned)differ))
        goto fail;
    Py_DECREF(raw_path);
    Py_DECREF(query);
    Py_DECREF(path);
    return scope;
fail:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_SystemError, "scope");
    Py_XDECREF(raw_path);
    Py_XDECREF(query);
    Py_XDECREF(path);
    Py_XDECREF(scope);
    return NULL;
}

/* The app's coroutine, or what it raised, to cycle._ended(exc). */
static int app_ended(Cycle *cycle, PyObject *exc)
{
    PyObject *got = call_method1((PyObject *)cycle, s_ended, exc);
    if (got != NULL) {
        Py_DECREF(got);
        return 0;
    }
    if (PyErr_ExceptionMatches(cancelled_error)) {
        PyErr_Clear();   /* the app cancelled itself: answered, nothing to cancel */
        return 0;
    }
    return -1;
}

/* ``cycle``'s bound method ``name``: the connection's spare method object
 * bound to it, if it has one (keep_method). */
static PyObject *bind_method(PyObject **spare, PyObject *cycle, PyObject *name)
{
    PyObject *method = *spare;
    if (method == NULL)
        return PyObject_GetAttr(cycle, name);
    *spare = NULL;
    if (PyMethod_Check(method))
        Py_SETREF(((PyMethodObject *)method)->im_self, Py_NewRef(cycle));
    else
        Py_SETREF(((PyCFunctionObject *)method)->m_self, Py_NewRef(cycle));
    return method;
}

/* Done with ``method`` (a reference given), a bound method of a request's
 * cycle: when nothing else holds it, even weakly, it is kept as the spare,
 * bound to None meanwhile (its cycle goes now), and the next request's is
 * the same object -- rebinding a method no one else can see is invisible,
 * and a request saves the two method objects an app's receive and send are. */
static void keep_method(PyObject **spare, PyObject *method)
{
    if (method != NULL && *spare == NULL && Py_REFCNT(method) == 1) {
        if (PyMethod_Check(method) && ((PyMethodObject *)method)->im_weakreflist == NULL) {
            Py_SETREF(((PyMethodObject *)method)->im_self, Py_NewRef(Py_None));
            *spare = method;
            return;
        }
        if (PyCFunction_CheckExact(method) &&
                ((PyCFunctionObject *)method)->m_weakreflist == NULL) {
            Py_SETREF(((PyCFunctionObject *)method)->m_self, Py_NewRef(Py_None));
            *spare = method;
            return;
        }
    }
    Py_XDECREF(method);
}

/* Start the app on ``cycle``, the connection's next request, with no task
 * and no loop turn: its coroutine is stepped here, in a copy of the
 * context, with the task it would go on in as the current one (eager.py
 * says why). 1: started (finished, or handed to its task); 0: not this
 * path's (nothing done: http.py's start); -1: an error. */
static int start_eagerly(AsgiCore *self, Cycle *cycle)
{
    if (self->cycle != Py_None || self->closing || self->app == NULL || self->app == Py_None ||
            current_tasks == NULL || self->loop == NULL || self->pipeline == NULL ||
            PyObject_Length(self->pipeline) != 0)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *running = PyDict_GetItemWithError(current_tasks, self->loop);
    if (running != NULL || PyErr_Occurred())
        return PyErr_Occurred() ? -1 : 0;   /* from inside a task: a task of its own */
    PyObject *receive = bind_method(&self->spare_receive, (PyObject *)cycle, s_receive);
    PyObject *send = NULL, *coro = NULL, *task = NULL, *context = NULL, *result = NULL;
    int status = -1;
    if (receive == NULL ||
            (send = bind_method(&self->spare_send, (PyObject *)cycle, s_send)) == NULL)
        goto done;
    Py_SETREF(self->cycle, Py_NewRef(cycle));
    PyObject *args[3] = {cycle->scope, receive, send};
    coro = PyObject_Vectorcall(self->app, args, 3, NULL);
    if (coro == NULL || !PyCoro_CheckExact(coro)) {
        /* It raised, or gave an awaitable of another kind: Python's. */
        if (coro == NULL) {
            PyObject *exc = raised_exception();
            status = app_ended(cycle, exc) ? -1 : 1;
            Py_XDECREF(exc);
        } else {
            PyObject *stepped[5] = {(PyObject *)cycle, coro, Py_None, Py_None, Py_None};
            result = PyObject_VectorcallMethod(s_suspended, stepped,
                                               5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            status = result == NULL ? -1 : 1;
        }
        goto done;
    }
    if (self->spare_task != NULL) {
        /* The last request's task, as untouched as a new one (below). */
        task = self->spare_task;
        self->spare_task = NULL;
        SLOT(task, task_begun) = Py_NewRef(coro);
    } else {
        /* eager.begin_task(loop, coro): a task with its loop, not yet its coroutine */
        if ((task = task_type->tp_alloc(task_type, 0)) == NULL)
            goto done;
        SLOT(task, task_begun) = Py_NewRef(coro);
        /* (the dict keeps no loop between calls, to keep none alive) */
        if (PyDict_SetItem(init_kwargs, s_loop, self->loop))
            goto done;
        int initialised = future_init(task, empty_tuple, init_kwargs);
        if (PyDict_SetItem(init_kwargs, s_loop, Py_None) || initialised < 0)
            goto done;
    }
    if ((context = PyContext_CopyCurrent()) == NULL)
        goto done;
    if (PyDict_SetItem(current_tasks, self->loop, task))
        goto done;
    PySendResult sent = PYGEN_ERROR;
    if (PyContext_Enter(context) == 0) {
        sent = PyIter_Send(coro, Py_None, &result);
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyContext_Exit(context);
        if (PyDict_DelItem(current_tasks, self->loop))
            PyErr_Clear();
        PyErr_Restore(type, exc, tb);
    } else if (PyDict_DelItem(current_tasks, self->loop)) {
        PyErr_Clear();
    }
    if (sent != PYGEN_NEXT && Py_REFCNT(task) == 1 && SLOT(task, task_touched) == NULL &&
            *PyObject_GET_WEAKREFS_LISTPTR(task) == NULL) {
        /* Nothing but this function holds the task, nothing weakly
         * (anyio's WeakKeyDictionary of task states), and no method that
         * leaves state on it ran (eager.EagerTask): it is as new as a fresh
         * one, pending, and no one can wait for its end. The connection's
         * next request runs in it. */
        Py_CLEAR(SLOT(task, task_begun));
        self->spare_task = task;
        task = NULL;
    } else if (sent != PYGEN_NEXT) {
        /* The task's end, for whoever waits on it (an exception is the
         * request's, answered by _ended). */
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyObject *finish_args[2] = {task, Py_None};
        PyObject *finished = PyObject_Vectorcall(future_finish, finish_args, 2, NULL);
        if (finished == NULL) {
            Py_XDECREF(type);
            Py_XDECREF(exc);
            Py_XDECREF(tb);
            goto done;
        }
        Py_DECREF(finished);
        PyErr_Restore(type, exc, tb);
    }
    if (sent == PYGEN_RETURN) {
        status = 1;
        if (!cycle->response_complete)
            status = app_ended(cycle, Py_None) ? -1 : 1;   /* no response, or half of one */
    } else if (sent == PYGEN_NEXT) {
        /* It waits for something: from here it is its task's. */
        PyObject *stepped[5] = {(PyObject *)cycle, coro, result, task, context};
        PyObject *got = PyObject_VectorcallMethod(s_suspended, stepped,
                                                  5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        status = got == NULL ? -1 : 1;
        Py_XDECREF(got);
    } else {
        PyObject *exc = raised_exception();
        status = exc == NULL || app_ended(cycle, exc) ? -1 : 1;
        Py_XDECREF(exc);
    }
done:
    Py_XDECREF(coro);   /* (first: a finished coroutine's frame held them) */
    keep_method(&self->spare_receive, receive);
    keep_method(&self->spare_send, send);
    Py_XDECREF(task);
    Py_XDECREF(context);
    Py_XDECREF(result);
    return status;
}

/* 0 or -1 (an exception set) from a call of http.py's Python. */
static int called(PyObject *got)
{
    Py_XDECREF(got);
    return got == NULL ? -1 : 0;
}

/* A head is complete: the scope and RequestCycle of a request of the
 * common kind, started at once or queued behind the one being answered;
 * any other head is _head_slow's. */
static int head_complete(AsgiCore *self)
{
    llhttp_t *parser = &self->parser;
    self->deadline = 0.0;
    if (host_check(parser, &self->parts))
        return -1;
    if (self->slow_head || self->cycle_type == NULL || parser->method == HTTP_CONNECT)
        return called(call_method0((PyObject *)self, s_head_slow));
    const char *name = llhttp_method_name((llhttp_method_t)parser->method);
    int which;
    PyObject *method = method_name(name, (Py_ssize_t)strlen(name), &which), *version;
    if (method == NULL)
        return -1;
    int alive = llhttp_should_keep_alive(parser);
    version = http_version(parser);
    /* The last request's cycle when nothing but this connection holds it
     * (a RequestCycle keeps no state but Cycle's): this request's scope and
     * cycle are made over from it. */
    Cycle *last = Py_TYPE(self->parsing) == (PyTypeObject *)self->cycle_type &&
                  Py_REFCNT(self->parsing) == 1 ? (Cycle *)self->parsing : NULL;
    PyObject *scope = version ? make_scope(self, method, version, last) : NULL, *cycle = NULL;
    int status = -1;
    if (scope == NULL) {
        Py_DECREF(method);
        Py_XDECREF(version);
        return PyErr_Occurred() ? -1 : called(call_method0((PyObject *)self, s_head_slow));
    }
    /* The next request's head starts in a new list. */
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL)
        goto done;
    Py_SETREF(self->headers, fresh);
    Py_SETREF(self->url, Py_NewRef(b_empty));
    if (last != NULL) {
        cycle = Py_NewRef(last);
        if (cycle_init(last, (PyObject *)self, scope, version, alive, self->expect_100,
                       which == M_HEAD))
            goto done;
    } else if ((cycle = cycle_make((PyTypeObject *)self->cycle_type, (PyObject *)self, scope,
                                   version, alive, self->expect_100, which == M_HEAD)) == NULL) {
        goto done;
    }
    /* A request without a body is complete now, before the app starts:
     * its receive() answers at once. */
    ((Cycle *)cycle)->more_body = self->body_follows;
    Py_SETREF(self->parsing, Py_NewRef(cycle));
    switch (start_eagerly(self, (Cycle *)cycle)) {
    case 1:
        status = 0;
        break;
    case 0:
        status = called(call_method1((PyObject *)self, s_new_request, cycle));
        break;
    }
done:
    Py_DECREF(method);
    Py_DECREF(version);
    Py_DECREF(scope);
    Py_XDECREF(cycle);
    return status;
}

/* A request's body is all here: a receive() waiting for it wakes. */
static int body_complete(AsgiCore *self)
{
    if (!PyObject_TypeCheck(self->parsing, &CycleType))
        return 0;   /* None: the WebSocket upgrade request */
    Cycle *cycle = (Cycle *)self->parsing;
    cycle->more_body = 0;
    if (cycle->waiter != Py_None)
        return called(call_method0(self->parsing, s_wake));
    return 0;
}

/* -- send ----------------------------------------------------------------- */

/* The head of a response and the first (or whole) body, in one bytes
 * object, as http.py's _write_head makes it: NULL with no exception for
 * what only that one does (a header value that is not bytes, a status we
 * have no line for). */
/* A body of at least this many bytes is written apart from the head: the
 * uring send stream then sends it from the object (its WRITE_REF_MIN,
 * _build/_core/fastpath.c), where joined to the head it would be copied
 * twice. tests/test_contracts.py holds the two equal. */
#define BODY_APART 8192

static PyObject *response_head(Cycle *cycle, AsgiCore *core, PyObject *body, int more_body)
{
    PyObject *version = cycle->version, *lines, *line;
    if ((lines = PyDict_GetItemWithError(status_lines, version)) == NULL)
        return NULL;
    if ((line = PyDict_GetItemWithError(lines, cycle->status)) == NULL || !PyBytes_Check(line))
        return NULL;
    if (PyList_GET_SIZE(core->date_line) != 1 || !PyBytes_Check(PyList_GET_ITEM(core->date_line, 0)))
        return NULL;
    PyObject *date = PyList_GET_ITEM(core->date_line, 0);
    if (!PyList_Check(cycle->headers) && !PyTuple_Check(cycle->headers))
        return NULL;   /* an iterable read once: _write_head's */
    PyObject *headers = PySequence_Fast(cycle->headers, "headers must be a sequence");
    if (headers == NULL)
        return NULL;
    long status = PyLong_AsLong(cycle->status);
    if (status == -1 && PyErr_Occurred()) {
        Py_DECREF(headers);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(headers), total, i;
    total = PyBytes_GET_SIZE(line) + PyBytes_GET_SIZE(date) + 2;
    int has_length = 0;
    for (i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(headers, i), *k, *v;
        if (!PyTuple_Check(pair) && !PyList_Check(pair))
            goto other;
        if (PySequence_Fast_GET_SIZE(pair) != 2)
            goto other;
        k = PySequence_Fast_GET_ITEM(pair, 0);
        v = PySequence_Fast_GET_ITEM(pair, 1);
        if (!PyBytes_Check(k) || !PyBytes_Check(v))
            goto other;
        Py_ssize_t klen = PyBytes_GET_SIZE(k);
        const char *kp = PyBytes_AS_STRING(k);
        if (!field_name_ok(kp, klen) || !field_value_ok(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v)))
            goto other;   /* _write_head refuses it, with the reason */
        if (klen == 14 && strncasecmp(kp, "content-length", 14) == 0)
            has_length = 1;
        else if ((klen == 10 && strncasecmp(kp, "connection", 10) == 0) ||
                 (klen == 17 && strncasecmp(kp, "transfer-encoding", 17) == 0))
            goto other;   /* what _write_head decides on */
        total += klen + PyBytes_GET_SIZE(v) + 4;
    }
    char length[48] = "";
    /* (status_lines has the final statuses only: a 1xx is _write_head's
     * to refuse.) 204 and 304 have no content, whatever the app gives. */
    if (status == 204 || status == 304)
        cycle->head_only = 1;
    else if (!has_length) {
        if (more_body)
            goto other;   /* chunked, or a close for HTTP/1.0 */
        /* (by hand: snprintf's format parsing was a tenth of this function) */
        char digits[24], *d = digits + sizeof digits;
        Py_ssize_t n = PyBytes_GET_SIZE(body);
        do {
            *--d = (char)('0' + n % 10);
            n /= 10;
        } while (n);
        size_t nd = (size_t)(digits + sizeof digits - d);
        memcpy(length, "content-length: ", 16);
        memcpy(length + 16, d, nd);
        memcpy(length + 16 + nd, "\r\n", 3);
    }
    int v11 = version == s_v11;
    const char *conn = !cycle->keep_alive ? "connection: close\r\n" :
                       v11 ? "" : "connection: keep-alive\r\n";
    Py_ssize_t nlength = (Py_ssize_t)strlen(length), nconn = (Py_ssize_t)strlen(conn);
    Py_ssize_t nbody = cycle->head_only || PyBytes_GET_SIZE(body) >= BODY_APART
                       ? 0 : PyBytes_GET_SIZE(body);   /* (a large one: Cycle_send's) */
    PyObject *wire = PyBytes_FromStringAndSize(NULL, total + nlength + nconn + nbody);
    if (wire == NULL) {
        Py_DECREF(headers);
        return NULL;
    }
    char *p = PyBytes_AS_STRING(wire);
#define COPY(src, len) do { memcpy(p, src, len); p += len; } while (0)
    COPY(PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line));
    COPY(PyBytes_AS_STRING(date), PyBytes_GET_SIZE(date));
    for (i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(headers, i);
        PyObject *k = PySequence_Fast_GET_ITEM(pair, 0), *v = PySequence_Fast_GET_ITEM(pair, 1);
        COPY(PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k));
        COPY(": ", 2);
        COPY(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
        COPY("\r\n", 2);
    }
    COPY(length, nlength);
    COPY(conn, nconn);
    COPY("\r\n", 2);
    COPY(PyBytes_AS_STRING(body), nbody);
#undef COPY
    Py_DECREF(headers);
    return wire;
other:
    Py_DECREF(headers);
    return NULL;
}

/* The response is complete: wake a receive() waiting for the end, and
 * hand the connection on (response_done, http.py). */
static int cycle_complete(Cycle *self)
{
    self->response_complete = 1;
    if (self->waiter != Py_None) {
        PyObject *got = call_method0((PyObject *)self, s_wake);
        if (got == NULL)
            return -1;
        Py_DECREF(got);
    }
    AsgiCore *core = (AsgiCore *)self->proto;
    if (core->cycle == (PyObject *)self && self->keep_alive && !core->closing &&
            !core->pending_error && !core->client_eof && !core->access_log &&
            core->pipeline != NULL && PyObject_Length(core->pipeline) == 0) {
        /* The common end, response_done's: the connection waits for the
         * next request, for keep_alive seconds at most. */
        Py_SETREF(core->cycle, Py_NewRef(Py_None));
        core->deadline = monotonic() + core->keep_alive;
        core->deadline_head = 0;
        if (!core->reading_paused)
            return 0;
        PyObject *got = call_method0((PyObject *)core, s_update_reading);
        Py_XDECREF(got);
        return got == NULL ? -1 : 0;
    }
    if (PyErr_Occurred())
        return -1;
    PyObject *got = call_method1(self->proto, s_response_done, (PyObject *)self);
    if (got == NULL)
        return -1;
    Py_DECREF(got);
    return 0;
}

/* What send() returns: done, or the protocol's drain() while the client
 * is slow to read. */
static PyObject *after_write(AsgiCore *core)
{
    if (core->write_paused)
        return call_method0((PyObject *)core, s_drain);
    return Py_NewRef(done);
}

static PyObject *Cycle_send(Cycle *self, PyObject *message)
{
    if (!PyDict_CheckExact(message) || !PyObject_TypeCheck(self->proto, &AsgiCoreType))
        return call_method1((PyObject *)self, s_send_slow, message);
    PyObject *kind = PyDict_GetItemWithError(message, s_type);
    if (kind == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, s_type);
        return NULL;
    }
    if (!self->response_started) {
        if (!PyUnicode_Check(kind) || PyUnicode_Compare(kind, s_response_start) != 0)
            return call_method1((PyObject *)self, s_send_slow, message);
        PyObject *status = PyDict_GetItemWithError(message, s_status), *headers;
        if (status == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, s_status);
            return NULL;
        }
        headers = PyDict_GetItemWithError(message, s_headers);
        if (headers == NULL && PyErr_Occurred())
            return NULL;
        self->response_started = 1;
        Py_SETREF(self->status, Py_NewRef(status));
        Py_SETREF(self->headers, headers ? Py_NewRef(headers) : PyTuple_New(0));
        if (self->headers == NULL)
            return NULL;
        return Py_NewRef(done);
    }
    /* The common body message: the head not yet written, or a plain body. */
    if (self->response_complete || self->disconnected || self->chunked ||
            !PyUnicode_Check(kind) || PyUnicode_Compare(kind, s_response_body) != 0)
        return call_method1((PyObject *)self, s_send_slow, message);
    AsgiCore *core = (AsgiCore *)self->proto;
    PyObject *body = PyDict_GetItemWithError(message, s_body), *more;
    if (body == NULL && PyErr_Occurred())
        return NULL;
    more = PyDict_GetItemWithError(message, s_more_body);
    if (more == NULL && PyErr_Occurred())
        return NULL;
    int more_body = more != NULL && PyObject_IsTrue(more);
    if (more_body < 0)
        return NULL;
    if (body == NULL)
        body = b_empty;
    if (!PyBytes_Check(body) || core->write == NULL || core->closing)
        return call_method1((PyObject *)self, s_send_slow, message);
    PyObject *wire = NULL;
    int body_apart = !self->head_only && PyBytes_GET_SIZE(body) > 0;
    if (self->headers != Py_None) {
        wire = response_head(self, core, body, more_body);
        if (wire == NULL)
            return PyErr_Occurred() ? NULL : call_method1((PyObject *)self, s_send_slow, message);
        Py_SETREF(self->headers, Py_NewRef(Py_None));
        body_apart = body_apart && PyBytes_GET_SIZE(body) >= BODY_APART;
    }
    for (int i = 0; i < 2; i++) {   /* the head (and a small body), then a body apart */
        PyObject *out = i == 0 ? wire : body_apart ? body : NULL;
        if (out == NULL)
            continue;
        PyObject *got = PyObject_CallOneArg(core->write, out);
        if (got == NULL) {
            Py_XDECREF(wire);
            return NULL;
        }
        Py_DECREF(got);
    }
    Py_XDECREF(wire);
    if (!self->head_only)
        self->sent += PyBytes_GET_SIZE(body);
    if (!more_body && cycle_complete(self))
        return NULL;
    return after_write(core);
}

/* -- types ----------------------------------------------------------------- */

static PyMemberDef Cycle_members[] = {
    {"proto", T_OBJECT, offsetof(Cycle, proto), READONLY, NULL},
    {"scope", T_OBJECT, offsetof(Cycle, scope), READONLY, NULL},
    {"body", T_OBJECT_EX, offsetof(Cycle, body), 0, NULL},
    {"waiter", T_OBJECT, offsetof(Cycle, waiter), 0, NULL},
    {"status", T_OBJECT, offsetof(Cycle, status), 0, NULL},
    {"headers", T_OBJECT, offsetof(Cycle, headers), 0, NULL},
    {"version", T_OBJECT, offsetof(Cycle, version), READONLY, NULL},
    {"received", T_PYSSIZET, offsetof(Cycle, received), 0, NULL},
    {"sent", T_PYSSIZET, offsetof(Cycle, sent), 0, NULL},
    {"keep_alive", T_BOOL, offsetof(Cycle, keep_alive), 0, NULL},
    {"expect_100", T_BOOL, offsetof(Cycle, expect_100), 0, NULL},
    {"more_body", T_BOOL, offsetof(Cycle, more_body), 0, NULL},
    {"body_done", T_BOOL, offsetof(Cycle, body_done), 0, NULL},
    {"disconnected", T_BOOL, offsetof(Cycle, disconnected), 0, NULL},
    {"response_started", T_BOOL, offsetof(Cycle, response_started), 0, NULL},
    {"response_complete", T_BOOL, offsetof(Cycle, response_complete), 0, NULL},
    {"chunked", T_BOOL, offsetof(Cycle, chunked), 0, NULL},
    {"head_only", T_BOOL, offsetof(Cycle, head_only), 0, NULL},
    {NULL}
};

static PyMethodDef Cycle_methods[] = {
    {"send", (PyCFunction)Cycle_send, METH_O,
     "The app's send(message): an awaitable, finished unless the client is slow to read."},
    {NULL}
};

static PyTypeObject CycleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio.asgi._asgicore.Cycle",
    .tp_doc = "One request and its response (http.RequestCycle's state and send()).",
    .tp_basicsize = sizeof(Cycle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = Cycle_new,
    .tp_dealloc = (destructor)Cycle_dealloc,
    .tp_traverse = (traverseproc)Cycle_traverse,
    .tp_clear = (inquiry)Cycle_clear,
    .tp_methods = Cycle_methods,
    .tp_members = Cycle_members,
};

static PyObject *get_transport(AsgiCore *self, void *c)
{
    return Py_NewRef(self->transport ? self->transport : Py_None);
}

static int set_transport(AsgiCore *self, PyObject *transport, void *c)
{
    if (transport == NULL) {
        PyErr_SetString(PyExc_TypeError, "transport cannot be deleted");
        return -1;
    }
    PyObject *write = NULL;
    if (transport != Py_None && (write = PyObject_GetAttrString(transport, "write")) == NULL)
        return -1;
    Py_XSETREF(self->transport, Py_NewRef(transport));
    Py_XSETREF(self->write, write);
    return 0;
}

static PyGetSetDef AsgiCore_getset[] = {
    {"transport", (getter)get_transport, (setter)set_transport, NULL, NULL},
    {NULL}
};

/* What http.py reads or sets. Typed members refuse a wrong type. */
static PyMemberDef AsgiCore_members[] = {
    {"url", T_OBJECT_EX, offsetof(AsgiCore, url), 0, NULL},
    {"headers", T_OBJECT_EX, offsetof(AsgiCore, headers), 0, NULL},
    {"cycle", T_OBJECT, offsetof(AsgiCore, cycle), 0, NULL},
    {"parsing", T_OBJECT, offsetof(AsgiCore, parsing), 0, NULL},
    {"sockname", T_OBJECT, offsetof(AsgiCore, sockname), 0, NULL},
    {"client", T_OBJECT, offsetof(AsgiCore, client), 0, NULL},
    {"scheme", T_OBJECT, offsetof(AsgiCore, scheme), 0, NULL},
    {"_root_path", T_OBJECT_EX, offsetof(AsgiCore, root_path), 0, NULL},
    {"_state", T_OBJECT_EX, offsetof(AsgiCore, state), 0, NULL},
    {"_cycle_type", T_OBJECT, offsetof(AsgiCore, cycle_type), 0, NULL},
    {"_date_line", T_OBJECT_EX, offsetof(AsgiCore, date_line), 0, NULL},
    {"deadline", T_DOUBLE, offsetof(AsgiCore, deadline), 0, NULL},
    {"deadline_head", T_BOOL, offsetof(AsgiCore, deadline_head), 0, NULL},
    {"trust_forwarded", T_BOOL, offsetof(AsgiCore, trust_forwarded), 0, NULL},
    {"body_follows", T_BOOL, offsetof(AsgiCore, body_follows), READONLY, NULL},
    {"_header_timeout", T_DOUBLE, offsetof(AsgiCore, header_timeout), 0, NULL},
    {"head_bytes", T_PYSSIZET, offsetof(AsgiCore, head_bytes), 0, NULL},
    {"_max_head", T_PYSSIZET, offsetof(AsgiCore, max_head), 0, NULL},
    {"_max_body", T_PYSSIZET, offsetof(AsgiCore, max_body), 0, NULL},
    {"closing", T_BOOL, offsetof(AsgiCore, closing), 0, NULL},
    {"write_paused", T_BOOL, offsetof(AsgiCore, write_paused), 0, NULL},
    {"pipeline", T_OBJECT, offsetof(AsgiCore, pipeline), 0, NULL},
    {"loop", T_OBJECT, offsetof(AsgiCore, loop), 0, NULL},
    {"_app", T_OBJECT, offsetof(AsgiCore, app), 0, NULL},
    {"_keep_alive", T_DOUBLE, offsetof(AsgiCore, keep_alive), 0, NULL},
    {"pending_error", T_INT, offsetof(AsgiCore, pending_error), 0, NULL},
    {"reading_paused", T_BOOL, offsetof(AsgiCore, reading_paused), 0, NULL},
    {"client_eof", T_BOOL, offsetof(AsgiCore, client_eof), 0, NULL},
    {"_access_log", T_BOOL, offsetof(AsgiCore, access_log), 0, NULL},
    {NULL}
};

static PyMethodDef AsgiCore_methods[] = {
    {"data_received", (PyCFunction)AsgiCore_data_received, METH_O, "Parse a chunk."},
    {"parsed_head", (PyCFunction)AsgiCore_parsed_head, METH_NOARGS,
     "The head just parsed: (http_version, method, upgrade, keep_alive)."},
    {NULL}
};

static PyTypeObject AsgiCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio.asgi._asgicore.AsgiCore",
    .tp_doc = "The llhttp parser of http.HttpProtocol, its callbacks and its per-request state.",
    .tp_basicsize = sizeof(AsgiCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = AsgiCore_new,
    .tp_dealloc = (destructor)AsgiCore_dealloc,
    .tp_traverse = (traverseproc)AsgiCore_traverse,
    .tp_clear = (inquiry)AsgiCore_clear,
    .tp_methods = AsgiCore_methods,
    .tp_members = AsgiCore_members,
    .tp_getset = AsgiCore_getset,
};

/* -- module ----------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "setup(limit, asgi_version, status_lines, unquote, task_type, current_tasks,\n"
     "      cancelled_error, future_type, future_finish, parser_error, parser_upgrade)"},
    {NULL}
};

static struct PyModuleDef asgicore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uringio.asgi._asgicore",
    .m_doc = "The ASGI server's per-request path in C (see _build/asgi/asgicore.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

#define INTERN(var, text) ((var = PyUnicode_InternFromString(text)) == NULL)

PyMODINIT_FUNC PyInit__asgicore(void)
{
    if (http_glue_init() || INTERN(s_on_body, "on_body") ||
        INTERN(s_head_slow, "_head_slow") || INTERN(s_input_failed, "_input_failed") ||
        INTERN(s_new_request, "_new_request") || INTERN(s_response_done, "response_done") ||
        INTERN(s_drain, "drain") || INTERN(s_type, "type") ||
        INTERN(s_asgi, "asgi") || INTERN(s_http_version, "http_version") ||
        INTERN(s_server, "server") || INTERN(s_client, "client") || INTERN(s_scheme, "scheme") ||
        INTERN(s_method, "method") || INTERN(s_root_path, "root_path") ||
        INTERN(s_path, "path") || INTERN(s_raw_path, "raw_path") ||
        INTERN(s_query_string, "query_string") || INTERN(s_headers, "headers") ||
        INTERN(s_state, "state") || INTERN(s_extensions, "extensions") ||
        INTERN(s_http, "http") || INTERN(s_pathsend_key, "http.response.pathsend") ||
        INTERN(s_status, "status") ||
        INTERN(s_body, "body") || INTERN(s_more_body, "more_body") ||
        INTERN(s_response_start, "http.response.start") ||
        INTERN(s_response_body, "http.response.body") || INTERN(s_send_slow, "_send_slow") ||
        INTERN(s_receive, "receive") || INTERN(s_send, "send") || INTERN(s_ended, "_ended") ||
        INTERN(s_suspended, "_suspended") || INTERN(s_wake, "wake") ||
        INTERN(s_update_reading, "update_reading") || INTERN(s_upgrade, "upgrade") ||
        (b_empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL ||
        INTERN(s_loop, "loop") || (empty_tuple = PyTuple_New(0)) == NULL ||
        (init_kwargs = PyDict_New()) == NULL || PyDict_SetItem(init_kwargs, s_loop, Py_None))
        return NULL;
    if (PyType_Ready(&DoneType) < 0 || PyType_Ready(&CycleType) < 0 ||
        PyType_Ready(&AsgiCoreType) < 0)
        return NULL;
    if ((done = PyType_GenericAlloc(&DoneType, 0)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&asgicore_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "AsgiCore", (PyObject *)&AsgiCoreType) < 0 ||
        PyModule_AddObjectRef(m, "Cycle", (PyObject *)&CycleType) < 0 ||
        PyModule_AddObjectRef(m, "done", done) < 0 ||
        PyModule_AddIntConstant(m, "BODY_APART", BODY_APART) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
