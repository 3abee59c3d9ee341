/*
 * What the two C per-request paths share: serve http's
 * (protocols/httpcore.c) and the ASGI server's (asgi/asgicore.c). Parsing
 * with llhttp (compiled in from _build/vendor/llhttp): a head's pieces read
 * in place, a chunk parsed and what stopped the parser said; header names
 * and methods as objects made once; a limit raised as
 * protocols.http.RequestLimit(status); a Content-Length read.
 *
 * Each module that includes it calls http_glue_init() from its init
 * function and sets limit_type, parser_error and parser_upgrade from its
 * setup().
 */
#ifndef URINGIO_HTTP_GLUE_H
#define URINGIO_HTTP_GLUE_H

#include <Python.h>
#include <string.h>
#include <strings.h>

#include "llhttp.h"
#include "raised.h"

static PyObject *limit_type;   /* protocols.http.RequestLimit */

static PyObject *raise_limit(int status)
{
    PyObject *code = PyLong_FromLong(status);
    if (code == NULL)
        return NULL;
    PyObject *exc = PyObject_CallOneArg(limit_type, code);
    Py_DECREF(code);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static inline PyObject *call_method0(PyObject *obj, PyObject *name)
{
    return PyObject_VectorcallMethod(name, &obj, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static inline PyObject *call_method1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* -- llhttp ----------------------------------------------------------------- */

/* httptools' exception types, which http.py's _input_failed knows: what
 * did not parse, and an upgrade (the offset of what follows the head). */
static PyObject *parser_error, *parser_upgrade;

/* A piece of a head that llhttp reports in parts (the URL, a header's name
 * or value): a pointer into the chunk being parsed while the piece lies in
 * it, bytes once a chunk ends inside it (span_hold), as the chunk goes. */
typedef struct {
    const char *at;   /* where it lies in the chunk, or NULL: held, or empty */
    Py_ssize_t len;   /* its length so far, wherever it is */
    PyObject *held;   /* bytes, or NULL */
} Span;

typedef struct {
    Span url, name, value;
    int hosts;                  /* Host lines in this head (RFC 9112 §3.2: exactly one) */
    Py_ssize_t extensions;      /* chunk-extension bytes of this message's body so far */
} HeadParts;

/* RFC 9112 §7.1.1: chunk extensions are the sender's to add and ours to
 * ignore, but they are bytes no body limit counts: a message may carry this
 * many of them, no more (Node's CVE-2024-22019 was a body of endless ones). */
#define MAX_CHUNK_EXTENSIONS (16 * 1024)

#define HEAD_PARTS_FIELDS(X) X(parts.url.held) X(parts.name.held) X(parts.value.held)

static inline int span_add(Span *span, const char *at, size_t len)
{
    if (span->held == NULL && span->at == NULL) {
        span->at = at;
        span->len = (Py_ssize_t)len;
        return 0;
    }
    if (span->held == NULL && span->at + span->len == at) {
        span->len += (Py_ssize_t)len;
        return 0;
    }
    if (span->held == NULL &&
            (span->held = PyBytes_FromStringAndSize(span->at, span->len)) == NULL)
        return -1;
    span->at = NULL;
    span->len += (Py_ssize_t)len;
    PyBytes_ConcatAndDel(&span->held, PyBytes_FromStringAndSize(at, (Py_ssize_t)len));
    return span->held == NULL ? -1 : 0;
}

static inline int span_hold(Span *span)
{
    if (span->at == NULL)
        return 0;
    span->held = PyBytes_FromStringAndSize(span->at, span->len);
    span->at = NULL;
    return span->held == NULL ? -1 : 0;
}

static inline const char *span_data(Span *span, Py_ssize_t *len)
{
    *len = span->len;
    return span->held ? PyBytes_AS_STRING(span->held) : span->at ? span->at : "";
}

static inline void span_reset(Span *span)
{
    Py_CLEAR(span->held);
    span->at = NULL;
    span->len = 0;
}

/* The piece as bytes (a new reference), the span reset for the next. */
static inline PyObject *span_take(Span *span)
{
    PyObject *bytes = span->held;
    if (bytes == NULL)
        bytes = PyBytes_FromStringAndSize(span->at ? span->at : "", span->len);
    span->held = NULL;
    span->at = NULL;
    span->len = 0;
    return bytes;
}

/* The URL is complete: *url (a reference held) is now it. 0, or -1. */
static inline int take_url(HeadParts *parts, PyObject **url)
{
    PyObject *taken = span_take(&parts->url);
    if (taken == NULL)
        return -1;
    Py_XSETREF(*url, taken);
    return 0;
}

static inline void head_parts_reset(HeadParts *parts)
{
    span_reset(&parts->url);
    span_reset(&parts->name);
    span_reset(&parts->value);
}

/* A message begins: nothing of it counted yet. */
static inline void head_parts_begin(HeadParts *parts)
{
    parts->hosts = 0;
    parts->extensions = 0;
}

/* RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a
 * Host line, and to any request with more than one. -1 with RequestLimit(400)
 * raised, or 0. */
static inline int host_check(llhttp_t *parser, HeadParts *parts)
{
    int v11 = parser->http_major == 1 && parser->http_minor == 1;
    if (parts->hosts > 1 || (v11 && parts->hosts == 0)) {
        raise_limit(400);
        return -1;
    }
    return 0;
}

/* len more bytes of a chunk extension (its name or value): -1 with
 * RequestLimit(400) raised past MAX_CHUNK_EXTENSIONS, or 0. */
static inline int extension_grows(HeadParts *parts, size_t len)
{
    parts->extensions += (Py_ssize_t)len;
    if (parts->extensions > MAX_CHUNK_EXTENSIONS) {
        raise_limit(400);
        return -1;
    }
    return 0;
}

/* The llhttp settings of a C path: its callbacks, the functions of these
 * names in the file that includes this one (each returns 0, or -1 with the
 * exception set, which parse_chunk then hands on). */
#define PATH_CALLBACKS {                                                     \
    .on_message_begin = head_begins, .on_url = url_piece,                   \
    .on_url_complete = url_complete, .on_header_field = name_piece,         \
    .on_header_value = value_piece, .on_header_value_complete = header_complete, \
    .on_headers_complete = headers_complete, .on_body = body_piece,         \
    .on_chunk_extension_name = extension_piece,                             \
    .on_chunk_extension_value = extension_piece,                            \
    .on_message_complete = message_complete}

/* The request's version, "1.1" and "1.0" made once (known by identity). */
static PyObject *s_v11, *s_v10;

static inline PyObject *http_version(llhttp_t *parser)
{
    if (parser->http_major == 1 && parser->http_minor == 1)
        return Py_NewRef(s_v11);
    if (parser->http_major == 1 && parser->http_minor == 0)
        return Py_NewRef(s_v10);
    return PyUnicode_FromFormat("%d.%d", parser->http_major, parser->http_minor);
}

/* Parse ``data`` (any buffer): 0 when it all parsed, what is left open of a
 * head's pieces copied; -1 with an exception set, the buffer unreadable;
 * 1 when something stopped the parser, *stopped (a new reference) being
 * what: the exception a callback raised, parser_upgrade(offset of what
 * follows the head, the parser free again, as httptools leaves it), or
 * parser_error(llhttp's reason). */
static inline int parse_chunk(llhttp_t *parser, HeadParts *parts, PyObject *data,
                              PyObject **stopped)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return -1;
    const char *start = view.buf;
    llhttp_errno_t err = llhttp_execute(parser, start, (size_t)view.len);
    if (err == HPE_OK) {
        int held = span_hold(&parts->url) | span_hold(&parts->name) | span_hold(&parts->value);
        PyBuffer_Release(&view);
        return held ? -1 : 0;
    }
    head_parts_reset(parts);
    if (PyErr_Occurred()) {
        *stopped = raised_exception();
    } else if (err == HPE_PAUSED_UPGRADE && parser->upgrade) {
        Py_ssize_t offset = llhttp_get_error_pos(parser) - start;
        llhttp_resume_after_upgrade(parser);
        *stopped = PyObject_CallFunction(parser_upgrade, "n", offset);
    } else {
        const char *reason = llhttp_get_error_reason(parser);
        *stopped = PyObject_CallFunction(parser_error, "s",
                                         reason ? reason : llhttp_errno_name(err));
    }
    PyBuffer_Release(&view);
    return *stopped == NULL ? -1 : 1;
}

/* -- header names ----------------------------------------------------------- */

/* The names most requests send, lower-case, made once: a request's "Host"
 * becomes this "host", whose hash is already known, instead of new bytes. */
static const char *const common_names[] = {
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection",
    "content-length", "content-type", "transfer-encoding", "cookie", "referer", "origin",
    "cache-control", "authorization", "upgrade", "expect", "if-none-match", "if-modified-since",
    "x-forwarded-for", "x-forwarded-proto",
};
#define N_COMMON (sizeof(common_names) / sizeof(common_names[0]))
enum { H_HOST = 0, H_CONTENT_LENGTH = 6, H_TRANSFER_ENCODING = 8, H_UPGRADE = 14,
       H_EXPECT = 15, H_X_FORWARDED_FOR = 18, H_X_FORWARDED_PROTO = 19 };
static PyObject *common_bytes[N_COMMON];

/* The index in common_names of the header name raw[:size], any case, or -1. */
static int common_index(const char *raw, Py_ssize_t size)
{
    for (int i = 0; i < (int)N_COMMON; i++) {
        PyObject *known = common_bytes[i];
        if (PyBytes_GET_SIZE(known) == size && strncasecmp(PyBytes_AS_STRING(known), raw, size) == 0)
            return i;
    }
    return -1;
}

/* The header name raw[:size] in lower case (a new reference); *common (if
 * not NULL): its index in common_names, or -1. */
static inline PyObject *lower_name(const char *raw, Py_ssize_t size, int *common)
{
    int known = common_index(raw, size);
    if (common != NULL)
        *common = known;
    if (known >= 0)
        return Py_NewRef(common_bytes[known]);
    /* A new object written in place: PyBytes_FromStringAndSize(raw, 1) would
     * be CPython's one shared b"X", and lowering that in place changed every
     * b"X" in the process (found by fuzz/http_fuzz.py). With NULL it is new. */
    PyObject *lower = PyBytes_FromStringAndSize(NULL, size);
    if (lower != NULL) {
        char *p = PyBytes_AS_STRING(lower);
        for (Py_ssize_t i = 0; i < size; i++)
            p[i] = raw[i] >= 'A' && raw[i] <= 'Z' ? raw[i] + ('a' - 'A') : raw[i];
    }
    return lower;
}

/* The header whose name and value the spans hold: *name in lower case (a
 * common one made once, *common its index or -1), *value (new references);
 * the spans reset for the next. 0, or -1 with neither made. */
static inline int take_header(HeadParts *parts, PyObject **name, PyObject **value, int *common)
{
    Py_ssize_t len;
    const char *raw = span_data(&parts->name, &len);
    *name = lower_name(raw, len, common);
    span_reset(&parts->name);
    *value = *name ? span_take(&parts->value) : NULL;
    if (*value == NULL) {
        Py_CLEAR(*name);
        span_reset(&parts->value);
        return -1;
    }
    return 0;
}

/* A Content-Length value (llhttp has checked it): -1 if it is not a
 * number, -2 if over ``limit``. */
static long long content_length(PyObject *value, Py_ssize_t limit)
{
    const char *p = PyBytes_AS_STRING(value), *end = p + PyBytes_GET_SIZE(value);
    long long n = 0;
    int digits = 0;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (; p < end; p++, digits++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
        if (n > limit)
            return -2;
    }
    return digits ? n : -1;
}

/* -- response fields ---------------------------------------------------------- */

/* What an app may write as a response header (RFC 9110 §5.1, §5.5): a name
 * is a token; a value is visible characters, obs-text, spaces and tabs. A CR,
 * LF or NUL in either would let an app's value (often the client's, echoed)
 * end the header, or the head, and write headers or a body of its own. */
static unsigned char token_chars[256];

static inline int field_name_ok(const char *p, Py_ssize_t n)
{
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!token_chars[(unsigned char)p[i]])
            return 0;
    return 1;
}

static inline int field_value_ok(const char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* -- methods ----------------------------------------------------------------- */

/* The methods as str, interned: a route's ("GET", "HEAD") finds them by
 * identity. */
static const char *const method_list[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
                                          "CONNECT"};
#define N_METHODS (sizeof(method_list) / sizeof(method_list[0]))
enum { M_GET, M_HEAD, M_POST, M_PUT, M_DELETE, M_OPTIONS, M_PATCH, M_CONNECT };
static PyObject *methods[N_METHODS];

/* The method raw[:size] as str (a new reference); *which (if not NULL): its
 * index in method_list, or -1. */
static inline PyObject *method_name(const char *raw, Py_ssize_t size, int *which)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if ((Py_ssize_t)strlen(method_list[i]) == size && memcmp(method_list[i], raw, size) == 0) {
            if (which != NULL)
                *which = (int)i;
            return Py_NewRef(methods[i]);
        }
    if (which != NULL)
        *which = -1;
    return PyUnicode_DecodeLatin1(raw, size, NULL);
}

static int http_glue_init(void)
{
    if ((s_v11 = PyUnicode_InternFromString("1.1")) == NULL ||
        (s_v10 = PyUnicode_InternFromString("1.0")) == NULL)
        return -1;
    for (size_t i = 0; i < N_METHODS; i++)
        if ((methods[i] = PyUnicode_InternFromString(method_list[i])) == NULL)
            return -1;
    for (size_t i = 0; i < N_COMMON; i++)
        if ((common_bytes[i] = PyBytes_FromString(common_names[i])) == NULL)
            return -1;
    for (int c = 0; c < 256; c++)
        token_chars[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                         (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
    return 0;
}

#endif
