/*
 * uringio.protocols._httpcore: the per-request path of uringio.http, as CPython C-API
 * code: llhttp's callbacks (the parser compiled in, _build/vendor/llhttp).
 *
 * Why C: with 16 pipelined requests per read, a request costs the kernel
 * and the loop about 0.4 us, and the parser's own work about 0.2 us. The
 * HTTP layer in Python cost 1.3 us more: four Python callbacks and their
 * state, the Request, the routing and the response. Here llhttp calls C
 * back, with a head's pieces as pointers into the chunk being parsed (the
 * ASGI server's path does the same; http_glue.h has what both share).
 *
 * HttpCore is the base class of http.HTTPProtocol and holds the state of
 * the request being parsed. data_received runs the parser; the callbacks
 * build each Request, route it, call the handler and, for the common
 * response (HTTP/1.1 keep-alive, a status we know, no extra headers, no
 * file, not HEAD), append its bytes to the output list, which goes out in
 * one write per chunk. Everything else is HTTPProtocol's Python:
 *     self._respond(request, response)     any other response
 *     self._handler_failed(request, exc)   a handler raised, or returned no
 *                                          Response: the 500 response
 *     self._input_failed(exc)              the parser stopped: 400, a limit,
 *                                          500, or an exit going on
 *     self._head_incomplete(size)          a head not complete after a chunk
 *     router.handle(request)               a URL not in the exact-URL table
 * and a limit broken is http.RequestLimit(status), raised in a callback.
 *
 * The 431 limit is checked once a head is complete, not per header: a head
 * still incomplete after a chunk is bounded by _head_incomplete's count of
 * its bytes.
 *
 * http.py calls setup() once with the types and tables this code reads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <strings.h>
#include <time.h>
#include <structmember.h>

#include "http_glue.h"
#include "pyslots.h"
#include "raised.h"

/* -- what setup() hands over ---------------------------------------------- */

static PyTypeObject *request_type;   /* http.Request */
static PyTypeObject *response_type;  /* http.Response */
static PyObject *status_lines;       /* {status: b"HTTP/1.1 200 OK\r\nServer: ..\r\n"} */
static PyObject *date_now;           /* http._date: [when the next second begins, its Date line] */
static PyObject *date_line;          /* http._date_line(): formats the new second's line */
static Py_ssize_t max_header_bytes;
static Py_ssize_t rq_method, rq_url, rq_headers, rq_body, rq_keep_alive, rq_version;
static Py_ssize_t rs_status, rs_headers, rs_file, rs_tail, rs_wire, rs_wire_date, rs_wire_status;

/* Interned names and constants, made at import. */
static PyObject *s_by_url,
    *s_handle, *s_keep_alive_tail, *s_respond, *s_handler_failed, *s_input_failed,
    *s_head_incomplete, *s_join, *b_empty, *b_content_length;

static PyObject *setup(PyObject *module, PyObject *args)
{
    PyTypeObject *request, *response;
    PyObject *limit, *lines, *date, *date_fn, *error, *upgrade;
    Py_ssize_t max_header;
    if (!PyArg_ParseTuple(args, "O!O!OO!O!OnOO", &PyType_Type, &request, &PyType_Type, &response,
                          &limit, &PyDict_Type, &lines, &PyList_Type, &date, &date_fn, &max_header,
                          &error, &upgrade))
        return NULL;
    if (PyList_GET_SIZE(date) != 2) {
        PyErr_SetString(PyExc_ValueError, "the date state is [expires, line]");
        return NULL;
    }
    if (slot_offset(request, "method", &rq_method) || slot_offset(request, "url", &rq_url) ||
        slot_offset(request, "headers", &rq_headers) || slot_offset(request, "body", &rq_body) ||
        slot_offset(request, "keep_alive", &rq_keep_alive) ||
        slot_offset(request, "version", &rq_version) ||
        slot_offset(response, "status", &rs_status) ||
        slot_offset(response, "headers", &rs_headers) ||
        slot_offset(response, "file", &rs_file) || slot_offset(response, "_tail", &rs_tail) ||
        slot_offset(response, "_wire", &rs_wire) ||
        slot_offset(response, "_wire_date", &rs_wire_date) ||
        slot_offset(response, "_wire_status", &rs_wire_status))
        return NULL;
    Py_INCREF(request);
    Py_XSETREF(request_type, request);
    Py_INCREF(response);
    Py_XSETREF(response_type, response);
    Py_XSETREF(limit_type, Py_NewRef(limit));
    Py_XSETREF(status_lines, Py_NewRef(lines));
    Py_XSETREF(date_now, Py_NewRef(date));
    Py_XSETREF(date_line, Py_NewRef(date_fn));
    max_header_bytes = max_header;
    Py_XSETREF(parser_error, Py_NewRef(error));
    Py_XSETREF(parser_upgrade, Py_NewRef(upgrade));
    Py_RETURN_NONE;
}

/* -- HttpCore --------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    llhttp_t parser;          /* its data: this HttpCore */
    HeadParts parts;          /* the pieces of a head, as they arrive */
    PyObject *send;           /* the connection's write() */
    PyObject *router;         /* http.Router */
    PyObject *by_url;         /* ...its _by_url, {url bytes: (handler, methods)} */
    PyObject *out;            /* list: the responses of this chunk of input */
    PyObject *date;           /* b"Date: ...\r\n" for this chunk */
    PyObject *url;            /* the request target so far (bytes) */
    PyObject *headers;        /* {lower-case name: value} so far */
    PyObject *body;           /* list of body pieces so far */
    PyObject *waiting_since;  /* when the head now incomplete began, or None */
    PyObject *spare;          /* a Request no one else holds, to reuse, or NULL */
    Py_ssize_t header_bytes;  /* names and values so far, with ": " and CRLF */
    Py_ssize_t body_size;
    Py_ssize_t max_body;
    Py_ssize_t stalled;       /* bytes fed while no head completed */
    char in_head;             /* a head has begun and is not complete */
    char done;                /* a response said "close": ignore the rest */
} HttpCore;

/* -- the head, from llhttp --------------------------------------------------
 *
 * Each callback returns 0, or -1 with the exception set: llhttp stops, and
 * data_received hands the exception to http.py's _input_failed. */

#define CORE(parser) ((HttpCore *)(parser)->data)

static int head_begins(llhttp_t *parser)
{
    HttpCore *self = CORE(parser);
    self->in_head = 1;
    head_parts_begin(&self->parts);
    return 0;
}

static int url_piece(llhttp_t *parser, const char *at, size_t len)
{
    return span_add(&CORE(parser)->parts.url, at, len);
}

static int url_complete(llhttp_t *parser)
{
    HttpCore *self = CORE(parser);
    return take_url(&self->parts, &self->url);
}

/* The fields of a head are counted when it is complete (headers_complete)
 * and, while it is not, by _head_incomplete per chunk. A trailer section
 * (fields after a chunked body: in_head is 0) is counted as it arrives,
 * against the same limit, the head's bytes included. */
static int trailer_grows(HttpCore *self, size_t len)
{
    if (self->in_head)
        return 0;
    self->header_bytes += (Py_ssize_t)len;
    if (self->header_bytes + PyBytes_GET_SIZE(self->url) <= max_header_bytes)
        return 0;
    raise_limit(431);
    return -1;
}

static int name_piece(llhttp_t *parser, const char *at, size_t len)
{
    HttpCore *self = CORE(parser);
    return trailer_grows(self, len) ? -1 : span_add(&self->parts.name, at, len);
}

static int value_piece(llhttp_t *parser, const char *at, size_t len)
{
    HttpCore *self = CORE(parser);
    return trailer_grows(self, len) ? -1 : span_add(&self->parts.value, at, len);
}

/* A header is complete: its name in lower case (a common one made once),
 * into the request's headers -- unless it is a trailer field, which is
 * dropped: RFC 9110 §6.5.1 forbids merging trailers into the header
 * section (Host and the framing were checked at the head). */
static int header_complete(llhttp_t *parser)
{
    HttpCore *self = CORE(parser);
    PyObject *name, *value;
    int common;
    if (take_header(&self->parts, &name, &value, &common))
        return -1;
    if (!self->in_head) {
        Py_DECREF(name);
        Py_DECREF(value);
        return trailer_grows(self, 4);   /* ": " and CRLF */
    }
    self->parts.hosts += common == H_HOST;
    self->header_bytes += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4;
    int failed = PyDict_SetItem(self->headers, name, value);
    Py_DECREF(name);
    Py_DECREF(value);
    return failed ? -1 : 0;
}

static int headers_complete(llhttp_t *parser)
{
    HttpCore *self = CORE(parser);
    self->in_head = 0;
    Py_XSETREF(self->waiting_since, Py_NewRef(Py_None));   /* deletable: may be NULL */
    self->stalled = 0;
    if (self->header_bytes + PyBytes_GET_SIZE(self->url) > max_header_bytes) {
        raise_limit(431);
        return -1;
    }
    if (host_check(parser, &self->parts))
        return -1;
    PyObject *length = PyDict_GetItemWithError(self->headers, b_content_length);
    if (length != NULL && PyBytes_Check(length) && content_length(length, self->max_body) == -2) {
        raise_limit(413);
        return -1;
    }
    if (length == NULL && PyErr_Occurred())
        return -1;
    /* serve http takes no upgrade: an Upgrade request is a request like
     * any other (RFC 9110 §7.8), its body read, and llhttp pauses after its
     * message (HPE_PAUSED_UPGRADE); the connection closes after the answer. */
    return 0;
}

static int body_piece(llhttp_t *parser, const char *at, size_t len)
{
    HttpCore *self = CORE(parser);
    self->body_size += (Py_ssize_t)len;
    if (self->body_size > self->max_body) {   /* chunked bodies announce no length */
        raise_limit(413);
        return -1;
    }
    PyObject *body = PyBytes_FromStringAndSize(at, (Py_ssize_t)len);
    int failed = body == NULL || PyList_Append(self->body, body);
    Py_XDECREF(body);
    return failed ? -1 : 0;
}

/* The Request of the message just parsed; resets the state for the next. */
static PyObject *take_request(HttpCore *self, int *is_head)
{
    PyObject *request = NULL, *method = NULL, *keep_alive = NULL, *version = NULL, *body;
    const char *name = llhttp_method_name((llhttp_method_t)self->parser.method);
    method = method_name(name, (Py_ssize_t)strlen(name), NULL);
    *is_head = method == methods[M_HEAD];
    if (method == NULL)
        return NULL;
    /* After an upgrade not taken the connection closes: the bytes that
     * follow are in the other protocol. */
    keep_alive = PyBool_FromLong(llhttp_should_keep_alive(&self->parser) && !self->parser.upgrade);
    if ((version = http_version(&self->parser)) == NULL)   /* "1.1" known by identity */
        goto done;
    Py_ssize_t pieces = PyList_GET_SIZE(self->body);
    if (pieces == 0)
        body = Py_NewRef(b_empty);
    else if (pieces == 1)
        body = Py_NewRef(PyList_GET_ITEM(self->body, 0));
    else if ((body = PyObject_CallMethodOneArg(b_empty, s_join, self->body)) == NULL)
        goto done;
    /* The state for the next request on this connection (pipelining). */
    PyObject *headers = PyDict_New(), *next_body = pieces ? PyList_New(0) : NULL;
    if (headers != NULL && (pieces == 0 || next_body != NULL)) {
        /* The last request, when its handler kept no reference to it, saves
         * a GC object's allocation and release per request. */
        request = self->spare;
        self->spare = NULL;
        if (request == NULL)
            request = request_type->tp_alloc(request_type, 0);
    }
    if (request == NULL) {
        Py_XDECREF(headers);
        Py_XDECREF(next_body);
        Py_DECREF(body);
        goto done;
    }
    /* The slots take our references and the request's parts. */
    Py_XSETREF(SLOT(request, rq_method), method);
    Py_XSETREF(SLOT(request, rq_keep_alive), keep_alive);
    Py_XSETREF(SLOT(request, rq_version), version);
    Py_XSETREF(SLOT(request, rq_body), body);
    Py_XSETREF(SLOT(request, rq_url), self->url);
    Py_XSETREF(SLOT(request, rq_headers), self->headers);
    method = keep_alive = version = NULL;
    self->url = Py_NewRef(b_empty);
    self->headers = headers;
    self->header_bytes = 0;
    if (pieces) {
        Py_SETREF(self->body, next_body);
        self->body_size = 0;
    }
done:
    Py_XDECREF(method);
    Py_XDECREF(keep_alive);
    Py_XDECREF(version);
    return request;
}

/* handler(request), or router.handle(request) when the URL as sent names no
 * route that takes the method. */
static PyObject *route(HttpCore *self, PyObject *request)
{
    PyObject *entry = PyDict_GetItemWithError(self->by_url, SLOT(request, rq_url));
    if (entry == NULL) {
        if (PyErr_Occurred())
            return NULL;
    } else if (PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 2) {
        PyObject *allowed = PyTuple_GET_ITEM(entry, 1), *method = SLOT(request, rq_method);
        int takes = 0;
        if (PyTuple_CheckExact(allowed))   /* interned names: found by identity */
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(allowed) && !takes; i++)
                takes = PyTuple_GET_ITEM(allowed, i) == method;
        if (!takes)
            takes = PySequence_Contains(allowed, method);
        if (takes < 0)
            return NULL;
        if (takes) {
            /* Our references: the handler may change the routes. */
            Py_INCREF(entry);
            PyObject *response = PyObject_Vectorcall(PyTuple_GET_ITEM(entry, 0), &request, 1, NULL);
            Py_DECREF(entry);
            return response;
        }
    }
    return PyObject_CallMethodOneArg(self->router, s_handle, request);
}

/* The whole of ``response`` on a keep-alive HTTP/1.1 connection: the status
 * line, this chunk's Date line and its _keep_alive_tail(). It is kept in the
 * response, which is often one made once and returned for every request
 * (a fixed page), as long as its status and the Date stay the same; the
 * body and content_type setters drop it. NULL with no exception set: a
 * status we have no line for, which _respond formats. */
static PyObject *common_response(HttpCore *self, PyObject *response)
{
    PyObject *status = SLOT(response, rs_status), *wire = SLOT(response, rs_wire);
    if (status == NULL)
        return NULL;
    if (wire != NULL && wire != Py_None && SLOT(response, rs_wire_date) == self->date
            && SLOT(response, rs_wire_status) == status)
        return Py_NewRef(wire);
    PyObject *line = PyDict_GetItemWithError(status_lines, status);
    if (line == NULL)
        return NULL;
    PyObject *tail = SLOT(response, rs_tail);
    if (tail == NULL || tail == Py_None)
        tail = call_method0(response, s_keep_alive_tail);
    else
        Py_INCREF(tail);
    if (tail == NULL)
        return NULL;
    if (!PyBytes_Check(line) || !PyBytes_Check(tail)) {
        Py_DECREF(tail);
        PyErr_SetString(PyExc_TypeError, "a status line and a response tail are bytes");
        return NULL;
    }
    Py_ssize_t n_line = PyBytes_GET_SIZE(line), n_date = PyBytes_GET_SIZE(self->date);
    wire = PyBytes_FromStringAndSize(NULL, n_line + n_date + PyBytes_GET_SIZE(tail));
    if (wire != NULL) {
        char *p = PyBytes_AS_STRING(wire);
        memcpy(p, PyBytes_AS_STRING(line), n_line);
        memcpy(p + n_line, PyBytes_AS_STRING(self->date), n_date);
        memcpy(p + n_line + n_date, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail));
        Py_XSETREF(SLOT(response, rs_wire), Py_NewRef(wire));
        Py_XSETREF(SLOT(response, rs_wire_date), Py_NewRef(self->date));
        Py_XSETREF(SLOT(response, rs_wire_status), Py_NewRef(status));
    }
    Py_DECREF(tail);
    return wire;
}

/* A request is complete: its Request routed to its handler, and the
 * response appended to the chunk's output (the common one), or _respond's. */
static int extension_piece(llhttp_t *parser, const char *at, size_t len)
{
    return extension_grows(&CORE(parser)->parts, len);
}

static int message_complete(llhttp_t *parser)
{
    HttpCore *self = CORE(parser);
    int is_head;
    if (self->done)   /* the rest of a chunk after a response that closes */
        return 0;
    PyObject *request = take_request(self, &is_head);
    if (request == NULL)
        return -1;
    PyObject *response = route(self, request);
    int status = -1;
    if (response != NULL && !PyObject_TypeCheck(response, response_type)) {
        PyErr_Format(PyExc_TypeError, "the handler returned %.100s, not a Response",
                     Py_TYPE(response)->tp_name);
        Py_SETREF(response, NULL);
    }
    if (response == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            goto done;   /* KeyboardInterrupt and the like: _input_failed raises them */
        PyObject *exc = raised_exception();
        PyObject *call[3] = {(PyObject *)self, request, exc};
        response = PyObject_VectorcallMethod(s_handler_failed, call,
                                             3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_XDECREF(exc);
        if (response == NULL)
            goto done;
        if (!PyObject_TypeCheck(response, response_type)) {
            PyErr_SetString(PyExc_TypeError, "_handler_failed() returned no Response");
            goto done;
        }
    }
    if (!is_head && SLOT(request, rq_version) == s_v11 && SLOT(request, rq_keep_alive) == Py_True
            && SLOT(response, rs_headers) == Py_None && SLOT(response, rs_file) == Py_None) {
        PyObject *wire = common_response(self, response);
        if (wire != NULL) {
            int failed = PyList_Append(self->out, wire);
            Py_DECREF(wire);
            status = failed ? -1 : 0;
            goto done;
        }
        if (PyErr_Occurred())
            goto done;
    }
    PyObject *call[3] = {(PyObject *)self, request, response};
    PyObject *result = PyObject_VectorcallMethod(s_respond, call,
                                                 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    status = result == NULL ? -1 : 0;
    Py_XDECREF(result);
done:
    Py_XDECREF(response);
    if (Py_REFCNT(request) == 1 && self->spare == NULL && Py_IS_TYPE(request, request_type)) {
        self->spare = request;   /* ours alone: the next request reuses it */
        if (SLOT(request, rq_body) != b_empty)   /* not holding a body till then */
            Py_XSETREF(SLOT(request, rq_body), Py_NewRef(b_empty));
    } else
        Py_DECREF(request);
    return status;
}

/* this->date: the Date line of the second we are in, from http._date, or
 * from http._date_line() when a new second has begun. */
static int current_date(HttpCore *self)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);   /* time.time()'s clock */
    PyObject *line;
    double expires = PyList_GET_SIZE(date_now) == 2 ? PyFloat_AsDouble(PyList_GET_ITEM(date_now, 0)) : 0.0;
    if (expires == -1.0 && PyErr_Occurred())
        return -1;
    if (now.tv_sec + now.tv_nsec * 1e-9 < expires)
        line = Py_NewRef(PyList_GET_ITEM(date_now, 1));
    else if ((line = PyObject_CallNoArgs(date_line)) == NULL)
        return -1;
    if (!PyBytes_Check(line)) {
        Py_DECREF(line);
        PyErr_SetString(PyExc_TypeError, "the Date line is bytes");
        return -1;
    }
    Py_SETREF(self->date, line);
    return 0;
}

/* Send what this chunk's requests produced, in one write. */
static PyObject *HttpCore_flush(HttpCore *self, PyObject *unused)
{
    Py_ssize_t n = PyList_GET_SIZE(self->out);
    if (n == 0)
        Py_RETURN_NONE;
    PyObject *data = n == 1 ? Py_NewRef(PyList_GET_ITEM(self->out, 0))
                            : PyObject_CallMethodOneArg(b_empty, s_join, self->out);
    if (data == NULL)
        return NULL;
    PyObject *result = NULL;
    if (self->send == NULL)
        PyErr_SetString(PyExc_RuntimeError, "HTTPProtocol._send is not set");
    else if (PyList_SetSlice(self->out, 0, n, NULL) == 0)
        result = PyObject_CallOneArg(self->send, data);
    Py_DECREF(data);
    return result;
}

static PyObject *HttpCore_data_received(HttpCore *self, PyObject *data)
{
    if (self->done)
        Py_RETURN_NONE;
    if (current_date(self) < 0)
        return NULL;
    PyObject *stopped, *result;
    int parsed = parse_chunk(&self->parser, &self->parts, data, &stopped);
    if (parsed < 0)
        return NULL;
    if (parsed == 1) {
        /* Bad input, a limit broken, a failure in this path: Python answers. */
        PyObject *call[2] = {(PyObject *)self, stopped};
        result = PyObject_VectorcallMethod(s_input_failed, call,
                                           2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(stopped);
    } else if (self->in_head) {
        /* A head still incomplete after this chunk: Python counts it. */
        Py_ssize_t size = PyObject_Length(data);
        PyObject *call[2] = {(PyObject *)self, size < 0 ? NULL : PyLong_FromSsize_t(size)};
        result = call[1] == NULL ? NULL : PyObject_VectorcallMethod(
            s_head_incomplete, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_XDECREF(call[1]);
    } else {
        self->stalled = 0;
        result = Py_NewRef(Py_None);
    }
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    return HttpCore_flush(self, NULL);
}

static llhttp_settings_t settings = PATH_CALLBACKS;

static PyObject *HttpCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (request_type == NULL) {   /* the callbacks would have no types to build */
        PyErr_SetString(PyExc_RuntimeError, "uringio.protocols._httpcore.setup() has not been called "
                        "(import uringio.http, which calls it)");
        return NULL;
    }
    HttpCore *self = (HttpCore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    llhttp_init(&self->parser, HTTP_REQUEST, &settings);
    self->parser.data = self;
    self->send = Py_NewRef(Py_None);
    self->router = Py_NewRef(Py_None);
    self->by_url = PyDict_New();
    self->out = PyList_New(0);
    self->date = Py_NewRef(b_empty);
    self->url = Py_NewRef(b_empty);
    self->headers = PyDict_New();
    self->body = PyList_New(0);
    self->waiting_since = Py_NewRef(Py_None);
    if (self->by_url == NULL || self->out == NULL || self->headers == NULL || self->body == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Every object field, named once for traverse and clear. */
#define OBJECT_FIELDS(X) HEAD_PARTS_FIELDS(X) X(send) \
    X(router) X(by_url) X(out) X(date) X(url) X(headers) X(body) X(waiting_since) X(spare)

static int HttpCore_traverse(HttpCore *self, visitproc visit, void *arg)
{
#define VISIT_FIELD(field) Py_VISIT(self->field);
    OBJECT_FIELDS(VISIT_FIELD)
#undef VISIT_FIELD
    return 0;
}

static int HttpCore_clear(HttpCore *self)
{
#define CLEAR_FIELD(field) Py_CLEAR(self->field);
    OBJECT_FIELDS(CLEAR_FIELD)
#undef CLEAR_FIELD
    return 0;
}

static void HttpCore_dealloc(HttpCore *self)
{
    PyObject_GC_UnTrack(self);
    HttpCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The typed members refuse None or a wrong type with TypeError, so the C
 * code above can rely on what they hold. A cleared one reads as None. */
static PyObject *get_router(HttpCore *self, void *c)
{
    return Py_NewRef(self->router ? self->router : Py_None);
}

static int set_router(HttpCore *self, PyObject *router, void *c)
{
    if (router == NULL) {
        PyErr_SetString(PyExc_TypeError, "_router cannot be deleted");
        return -1;
    }
    PyObject *by_url = PyObject_GetAttr(router, s_by_url);
    if (by_url == NULL)
        return -1;
    if (!PyDict_Check(by_url)) {
        Py_DECREF(by_url);
        PyErr_SetString(PyExc_TypeError, "router._by_url must be a dict");
        return -1;
    }
    Py_XSETREF(self->router, Py_NewRef(router));
    Py_XSETREF(self->by_url, by_url);   /* the same dict: later routes are seen */
    return 0;
}

/* The method of the request being read, or the last one read when the
 * next has none yet: a refusal of HEAD has no content (_fail). */
static PyObject *get_method(HttpCore *self, void *closure)
{
    const char *name = llhttp_method_name((llhttp_method_t)self->parser.method);
    return method_name(name, (Py_ssize_t)strlen(name), NULL);
}

/* Setting either also takes what the per-request path needs from it. */
static PyGetSetDef HttpCore_getset[] = {
    {"_router", (getter)get_router, (setter)set_router, NULL, NULL},
    {"_method", (getter)get_method, NULL, NULL, NULL},
    {NULL}
};

/* What http.py reads or sets; the rest of the state is this file's alone. */
static PyMemberDef HttpCore_members[] = {
    {"_out", T_OBJECT, offsetof(HttpCore, out), READONLY, NULL},
    {"_date", T_OBJECT, offsetof(HttpCore, date), READONLY, NULL},
    {"_waiting_since", T_OBJECT, offsetof(HttpCore, waiting_since), 0, NULL},
    {"_max_body", T_PYSSIZET, offsetof(HttpCore, max_body), 0, NULL},
    {"_stalled", T_PYSSIZET, offsetof(HttpCore, stalled), 0, NULL},
    {"_done", T_BOOL, offsetof(HttpCore, done), 0, NULL},
    {"_send", T_OBJECT, offsetof(HttpCore, send), 0, NULL},
    {NULL}
};

static PyMethodDef HttpCore_methods[] = {
    {"data_received", (PyCFunction)HttpCore_data_received, METH_O,
     "Parse a chunk; send the responses it produced in one write."},
    {"_flush", (PyCFunction)HttpCore_flush, METH_NOARGS, "Send the responses made so far."},
    {NULL}
};

static PyTypeObject HttpCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringio.protocols._httpcore.HttpCore",
    .tp_doc = "The llhttp parser of http.HTTPProtocol, its callbacks and its per-request state.",
    .tp_basicsize = sizeof(HttpCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = HttpCore_new,
    .tp_dealloc = (destructor)HttpCore_dealloc,
    .tp_traverse = (traverseproc)HttpCore_traverse,
    .tp_clear = (inquiry)HttpCore_clear,
    .tp_methods = HttpCore_methods,
    .tp_members = HttpCore_members,
    .tp_getset = HttpCore_getset,
};

/* -- module ----------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(Request, Response, Limit, status_lines_11, date, date_line, max_header_bytes,\n"
     "      HttpParserError, HttpParserUpgrade)"},
    {NULL}
};

static struct PyModuleDef httpcore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uringio.protocols._httpcore",
    .m_doc = "uringio.http's per-request path in C (see _build/protocols/httpcore.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__httpcore(void)
{
    if (http_glue_init() ||
        (s_by_url = PyUnicode_InternFromString("_by_url")) == NULL ||
        (s_handle = PyUnicode_InternFromString("handle")) == NULL ||
        (s_keep_alive_tail = PyUnicode_InternFromString("_keep_alive_tail")) == NULL ||
        (s_respond = PyUnicode_InternFromString("_respond")) == NULL ||
        (s_handler_failed = PyUnicode_InternFromString("_handler_failed")) == NULL ||
        (s_input_failed = PyUnicode_InternFromString("_input_failed")) == NULL ||
        (s_head_incomplete = PyUnicode_InternFromString("_head_incomplete")) == NULL ||
        (s_join = PyUnicode_InternFromString("join")) == NULL ||
        (b_empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL ||
        (b_content_length = PyBytes_FromString("content-length")) == NULL)
        return NULL;
    if (PyType_Ready(&HttpCoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&httpcore_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "HttpCore", (PyObject *)&HttpCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
