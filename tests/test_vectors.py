"""Request vectors from outside, replayed over real sockets against both
servers (serve http, serve asgi) on both backends (docs/conformance.md
says what was replayed and what came of it).

(a) llhttp's own request vectors (tests/vectors/llhttp/, llhttp's
    markdown files unchanged): for each, llhttp's log says whether the
    bytes parse, into which requests, or where they fail. The server must
    agree: a request llhttp parses is answered (a 404 is an answer), in
    the right number and with the right boundaries (the ASGI app says what
    method, target and body it got); one llhttp refuses gets a 4xx, never
    a 2xx. Lenient-mode vectors are out of scope: both servers run llhttp
    strict.

(b) h11 as a second opinion: seeded streams of pipelined requests, hostile
    bytes included, parsed by h11 and sent to both servers. Where h11
    accepts a stream the servers frame the same requests; every other
    difference is one of the classes docs/conformance.md lists, each
    pinned by a test here.

(c) One regression test per class of advisory against HTTP/1.1 servers:
    request smuggling, header injection, oversized and unbounded fields.
    (The WebSocket ones are in tests/test_websocket_conformance.py.)
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
from dataclasses import dataclass, field

import pytest

import conftest
from conftest import REPO, proc_status, start_server, stop_server

APPS = os.path.join(REPO, "tests", "apps")
VECTORS = os.path.join(REPO, "tests", "vectors", "llhttp")
SERVERS = ["http", "asgi"]


# -- the servers ---------------------------------------------------------------------

def _start(kind: str, backend: str, *args: str):
    if kind == "asgi":
        argv = ["-m", "uringio", "serve", "asgi", "conformance_app:app", "--app-dir", APPS]
    else:
        argv = ["-m", "uringio", "serve", "http"]
    # (a connection a test leaves open must not hold up the stop for long)
    return start_server([*argv, "--port", "0", "--drain-timeout", "1", *args], backend)


def _stop_quietly(proc) -> str:
    """Stop a server; its log must hold no error and no traceback. The log."""
    assert stop_server(proc) == 0
    log = proc.stderr.read()
    assert "Traceback" not in log and "ERROR" not in log, log
    return log


@pytest.fixture(scope="module", params=[(kind, backend) for kind in SERVERS
                                        for backend in conftest.BACKENDS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def server(request):
    """(kind, port): one server per kind and backend for the whole module,
    as the many vectors are each a connection of their own."""
    kind, backend = request.param
    if backend == "uring":
        conftest.skip_unless_uring()
    proc, port = _start(kind, backend)
    yield kind, port
    _stop_quietly(proc)


def _stop_quietly_or_log(proc) -> str:
    """Stop a server; its log."""
    stop_server(proc)
    return proc.stderr.read()


@pytest.fixture(params=SERVERS)
def fresh_server(request, backend):
    """(kind, port, process): a server of its own, for a test that measures it."""
    proc, port = _start(request.param, backend)
    yield request.param, port, proc
    _stop_quietly(proc)


# -- reading what came back ------------------------------------------------------------

@dataclass
class Response:
    status: int
    version: bytes
    headers: dict[bytes, bytes]
    body: bytes

    def seen(self) -> dict:
        """What the ASGI app said it got."""
        return json.loads(self.body)


def _responses(data: bytes, head_requests: frozenset[int]) -> tuple[list[Response], bytes]:
    """The complete responses at the start of ``data`` (each framed by its
    Content-Length; none for the answers to the HEAD requests, whose
    indexes ``head_requests`` gives), and what is left."""
    out = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status = lines[0].split(b" ")[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if len(out) in head_requests else int(headers.get(b"content-length", b"0"))
        if len(rest) < length:
            break
        out.append(Response(int(status), version, headers, rest[:length]))
        data = rest[length:]
    return out, data


def exchange(port: int, data: bytes, expected: int, head_requests: frozenset[int] = frozenset(),
             timeout: float = 10.0, settle: float = 0.3) -> tuple[list[Response], bytes, bool]:
    """Send ``data``, then end the sending side (the client has said all it
    will), and read: until the server closes, or ``settle`` seconds after
    ``expected`` responses have come. (responses, bytes after the last
    complete one, whether the server closed.)"""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass   # refused part way: what was answered is below
        received, closed = b"", False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            responses, _ = _responses(received, head_requests)
            if len(responses) >= expected + 1:
                break   # more than expected: enough to fail on
            if len(responses) >= expected:
                deadline = min(deadline, time.monotonic() + settle)
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    responses, rest = _responses(received, head_requests)
    return responses, rest, closed


# -- (a) llhttp's vectors ------------------------------------------------------------------

# The files used, and the commit of nodejs/llhttp each is from (README.md).
VECTOR_FILES = ["sample.md", "method.md", "uri.md", "connection.md", "content-length.md",
                "transfer-encoding.md", "invalid.md", "finish.md", "pipelining.md"]

# What a vector's llhttp log says happened at its end.
PARSED = "parsed"            # every message complete, nothing else
INCOMPLETE = "incomplete"    # the bytes end inside a message
REFUSED = "refused"          # an error: the message it is in is refused
UPGRADE = "upgrade"          # CONNECT or Upgrade: llhttp stops after the head
CLOSED = "closed"            # bytes after a message that closes the connection

# Vectors whose copy here predates the llhttp the servers build on: obs-fold
# (a header line that starts with whitespace, RFC 9112 §5.2) was accepted in
# strict mode then; llhttp 9 accepts it only with lenient headers, and
# refuses it otherwise ("Unexpected whitespace after header value"), as
# invalid.md's "Spaces before headers" here already says. The replay
# expects what that llhttp does: a refusal (and the test of the parser
# against the vectors, below, checks this table).
OBS_FOLD = "obs-fold, accepted by the llhttp of this copy, refused by llhttp 9 in strict mode"
STALE = {
    ("sample.md", "Line folding in header value with CRLF"): OBS_FOLD,
    ("sample.md", "X-SSL-Nonsense"): OBS_FOLD,
    ("connection.md", "Parsing multiple tokens / Multiple tokens with folding"): OBS_FOLD,
    ("connection.md", "Parsing multiple tokens / Multiple tokens with folding, LWS, and CRLF"):
        OBS_FOLD,
}


@dataclass
class Message:
    """One request as llhttp's log tells it."""
    start: int                       # its offset in the vector's bytes
    url: bytes = b""
    version: tuple[int, int] = (0, 0)
    fields: list[bytes] = field(default_factory=list)   # header names, in order
    values: list[bytes] = field(default_factory=list)   # and their values
    body: bytes = b""
    version_end: int | None = None   # where its request line's version ends
    headers_complete: bool = False
    complete: bool = False

    def method(self, data: bytes) -> bytes:
        return data[self.start:].split(b" ", 1)[0]

    @property
    def hosts(self) -> int:
        return sum(name.lower() == b"host" for name in self.fields)

    @property
    def upgrades_to_websocket(self) -> bool:
        return any(name.lower() == b"upgrade" and value.strip().lower() == b"websocket"
                   for name, value in zip(self.fields, self.values, strict=True))

    @property
    def host_refused(self) -> bool:
        """RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host line,
        or any with more than one, is answered 400, which llhttp leaves to
        the server (both servers do it, test_hostile.py)."""
        return self.hosts > 1 or (self.version == (1, 1) and self.hosts == 0)


@dataclass
class Vector:
    file: str
    line: int
    name: str
    meta: dict
    data: bytes
    messages: list[Message]
    end: str
    reason: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{re.sub(r'[^A-Za-z0-9]+', '-', self.name).strip('-')}"

    @property
    def out_of_scope(self) -> str | None:
        kind = self.meta.get("type", "")
        if "lenient" in kind:
            return f"llhttp lenient mode ({kind}): both servers run llhttp strict"
        if kind not in ("request", "request-only", "request-finish"):
            return f"not a request ({kind})"
        if self.meta.get("skipBody"):
            return "llhttp's skip-body callback, which only a client uses"
        return None

    @property
    def complete(self) -> list[Message]:
        return [m for m in self.messages if m.complete]


def _unescape(text: str) -> bytes:
    """A vector's ```http block as the bytes llhttp's test runner feeds the
    parser (test/md-test.ts): a trailing newline dropped, escaped newlines
    joined, lines ended by CRLF, then \\r \\n \\t \\f \\xHH and \\OOO
    escapes, the whole encoded as UTF-8 (as Node makes a Buffer of it)."""
    text = text.removesuffix("\n")
    text = re.sub(r"\\(\r\n|\r|\n)", "", text)
    text = re.sub(r"\r\n|\r|\n", "\r\n", text)
    for escaped, char in (("\\r", "\r"), ("\\n", "\n"), ("\\t", "\t"), ("\\f", "\f")):
        text = text.replace(escaped, char)
    text = re.sub(r"\\x([0-9a-fA-F]+)", lambda m: chr(int(m.group(1), 16)), text)
    text = re.sub(r"\\([0-7]{1,3})", lambda m: chr(int(m.group(1), 8)), text)
    assert "${" not in text, "inline JavaScript in a vector"
    return text.encode("utf-8")


_SPAN = re.compile(r"^off=\d+ len=\d+ span\[(\w+)\]=(.*)$")


def _span(raw: str) -> bytes:
    # The log prints a span's bytes between quotes, and a lone CR or LF as cr, lf.
    if raw in ("cr", "lf"):
        return b"\r" if raw == "cr" else b"\n"
    assert raw[:1] == raw[-1:] == '"', raw
    return raw[1:-1].replace("\\t", "\t").replace("\\f", "\f").encode("utf-8")


def _messages(log: list[str]) -> list[Message]:
    messages: list[Message] = []
    last = None
    for line in log:
        offset = line.split(" ", 1)[0]
        if line.endswith(" message begin"):
            messages.append(Message(start=int(offset[4:])))
            last = None
            continue
        message = messages[-1] if messages else None
        span = _SPAN.match(line)
        if span and message is not None:
            kind, value = span.group(1), _span(span.group(2))
            if kind == "url":
                message.url += value
            elif kind == "body":
                message.body += value
            elif kind == "header_field" and not message.headers_complete:   # not a trailer
                if last == "header_field":
                    message.fields[-1] += value
                else:
                    message.fields.append(value)
                    message.values.append(b"")
            elif kind == "header_value" and not message.headers_complete:
                message.values[-1] += value
            last = kind
            continue
        last = None
        if message is None:
            continue
        if " headers complete " in line:
            major, minor = re.search(r" v=(\d+)/(\d+) ", line).groups()
            message.version = (int(major), int(minor))
            message.headers_complete = True
        elif line.endswith(" message complete"):
            message.complete = True
        elif line.endswith(" version complete"):
            message.version_end = int(offset[4:])
    return messages


def load_vectors(name: str) -> list[Vector]:
    """The vectors of one of llhttp's markdown files: each ```http block,
    with the meta comment before it and the ```log block after it."""
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        lines = f.read().split("\n")
    vectors, headings, meta, i = [], {}, {}, 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^(#+) (.*)$", line)
        if heading:
            level = len(heading.group(1))
            headings = {k: v for k, v in headings.items() if k < level}
            headings[level] = heading.group(2)
        elif line.startswith("<!-- meta="):
            meta = json.loads(line[len("<!-- meta="):-len(" -->")])
        elif line == "```http":
            end = lines.index("```", i + 1)
            log_at = lines.index("```log", end + 1)
            log_end = lines.index("```", log_at + 1)
            log = lines[log_at + 1:log_end]
            messages = _messages(log)
            errors = [re.search(r'error code=(\d+) reason="(.*)"$', x) for x in log
                      if " error code=" in x]
            reason = errors[-1].group(2) if errors else None
            if reason is None:
                finished = "finish=0" in log[-1] if "finish=" in log[-1] else None
                done = messages and messages[-1].complete and finished is not False
                state = PARSED if done else INCOMPLETE
            elif "Pause on CONNECT/Upgrade" in reason:
                state = UPGRADE
            elif "Data after `Connection: close`" in reason:
                state = CLOSED
            else:
                state = REFUSED
            title = " / ".join(headings[k] for k in sorted(headings) if k > 1)
            vector = Vector(name, i + 1, title, meta, _unescape("\n".join(lines[i + 1:end]) + "\n"),
                            messages, state, reason)
            if (name, title) in STALE:   # what llhttp 9 makes of it (see STALE)
                vector.end, vector.reason = REFUSED, STALE[name, title]
                for message in vector.messages:
                    message.complete = False
            vectors.append(vector)
            meta, i = {}, log_end
        i += 1
    return vectors


ALL_VECTORS = [vector for name in VECTOR_FILES for vector in load_vectors(name)]
IN_SCOPE = [vector for vector in ALL_VECTORS if vector.out_of_scope is None]


def with_host(vector: Vector) -> bytes | None:
    """The vector with ``Host: x`` added to each HTTP/1.1 request that has
    none (after its request line), or None where none lacks one, or a
    request line does not end in CRLF. As written, such a request is
    answered 400 (RFC 9112 §3.2), which would hide what the server makes of
    the rest; this way the rest is replayed too."""
    data, at = vector.data, []
    for message in vector.messages:
        if message.headers_complete and message.version == (1, 1) and message.hosts == 0:
            end = message.version_end
            if end is None or data[end:end + 2] != b"\r\n":
                return None
            at.append(end + 2)
    if not at:
        return None
    for offset in reversed(at):
        data = data[:offset] + b"Host: x\r\n" + data[offset:]
    return data


def _replays(isolated: bool):
    for vector in IN_SCOPE:
        for hosted in (False, True):
            if hosted and with_host(vector) is None:
                continue
            if ((vector.id, hosted) in ISOLATED) == isolated:
                yield pytest.param(vector, hosted, id=vector.id + ":with-Host" * hosted)


# What a server answers a request with, where it is not the request's own
# answer (docs/conformance.md, (a) "Results").
ANSWER, HOST_400, REFUSAL = "answer", "the 400 of RFC 9112 §3.2", "refusal"


def _treatment(kind: str, message: Message, data: bytes, hosted: bool) -> str:
    if message.host_refused and not hosted:
        return HOST_400
    if message.method(data) == b"CONNECT":
        return REFUSAL   # neither server is a proxy: CONNECT is refused (400)
    if kind == "asgi" and message.upgrades_to_websocket:
        return REFUSAL   # a WebSocket handshake without a valid key: 400
    return ANSWER


# These once logged an error (an absolute-form target without a path,
# http://host:port, was a 500 and an AttributeError; it is the path "/"
# now), so each runs against a server of its own, whose log is checked.
ISOLATED = {
    ("uri.md:55:Host-terminated-by-a-query-string", True),
    ("uri.md:78:host-port-terminated-by-a-query-string", True),
    ("uri.md:128:host-port-terminated-by-a-space", True),
}


def check_vector(kind: str, port: int, vector: Vector, hosted: bool) -> None:
    """Replay ``vector`` (with Host added, if ``hosted``) and check what
    came back against what llhttp's log says."""
    data = with_host(vector) if hosted else vector.data
    answered, treatments = [], []
    for message in vector.complete:
        answered.append(message)
        treatments.append(_treatment(kind, message, vector.data, hosted))
        if treatments[-1] != ANSWER:
            break   # refused: the connection closes after it
    stopped = bool(treatments) and treatments[-1] != ANSWER
    last = vector.messages[-1] if vector.messages else None
    # After the last complete request, what the vector ends with: a refusal
    # (llhttp's, or of a complete head without Host), or nothing.
    refusal_after = not stopped and (
        vector.end == REFUSED or (vector.end == INCOMPLETE and last is not None
                                  and not last.complete and last.headers_complete
                                  and last.host_refused and not hosted))
    heads = frozenset(i for i, (message, treatment)
                      in enumerate(zip(answered, treatments, strict=True))
                      if treatment == ANSWER and message.method(vector.data) == b"HEAD")
    responses, rest, _ = exchange(port, data, len(answered) + refusal_after, heads)
    what = (f"{vector.reason or vector.end}: {data!r} -> {[r.status for r in responses]} "
            f"{rest[:200]!r}")

    # Each request llhttp parsed is answered, in order, with its own answer.
    assert len(responses) >= len(answered), what
    for message, treatment, response in zip(answered, treatments,
                                            responses[:len(answered)], strict=True):
        if treatment != ANSWER:
            assert response.status // 100 == 4, what
            assert treatment != HOST_400 or response.status == 400, what
        elif kind == "asgi" and message.method(vector.data) == b"HEAD":
            assert response.status == 200 and response.body == b"", what
        elif kind == "asgi":
            assert response.status == 200, what
            seen = response.seen()
            assert seen["method"].encode() == message.method(vector.data), what
            assert seen["body"].encode("latin-1") == message.body, what
            if message.url.startswith(b"/"):
                target = seen["raw_path"] + ("?" + seen["query_string"]
                                             if seen["query_string"] else "")
                assert target.encode("latin-1") == message.url.split(b"#")[0], what
        else:
            assert response.status in (200, 404, 405), what   # the routes' answers
    extra = responses[len(answered):]
    if stopped or vector.end in (PARSED, UPGRADE, CLOSED):
        assert extra == [] and rest == b"", what      # nothing else answered
    elif refusal_after:
        assert [r.status // 100 for r in extra] == [4] and rest == b"", what
    else:   # INCOMPLETE: the bytes end inside a request, which is not answered
        assert len(extra) <= 1 and all(r.status // 100 == 4 for r in extra), what


@pytest.mark.parametrize("vector, hosted", list(_replays(isolated=False)))
def test_llhttp_vector(server, vector: Vector, hosted: bool):
    kind, port = server
    check_vector(kind, port, vector, hosted)


@pytest.mark.parametrize("kind", SERVERS)
def test_llhttp_vectors_that_log_an_error(backend, kind: str):
    """The vectors of ISOLATED, against a server of their own, whose log is
    then checked too."""
    replays = [param.values for param in _replays(isolated=True)]
    proc, port = _start(kind, backend)
    try:
        for vector, hosted in replays:
            check_vector(kind, port, vector, hosted)
    finally:
        log = _stop_quietly_or_log(proc)
    assert "Traceback" not in log and "ERROR" not in log, log


def test_the_vectors_out_of_scope_are_the_lenient_ones():
    """Each vector left out is left out for llhttp's lenient mode (the list
    docs/conformance.md gives)."""
    skipped = [(v.id, v.out_of_scope) for v in ALL_VECTORS if v.out_of_scope]
    assert all("lenient" in reason for _, reason in skipped), skipped
    assert len(IN_SCOPE) + len(skipped) == len(ALL_VECTORS) == 133
    assert len(skipped) == 14


class _Recorder:
    """httptools' callbacks: the requests the parser made of a stream."""

    def __init__(self) -> None:
        self.complete = 0

    def on_message_complete(self) -> None:
        self.complete += 1


def _llhttp_verdict(data: bytes) -> tuple[int, bool]:
    """(requests complete, refused) by httptools' llhttp: the release both
    servers compile in (_build/vendor/llhttp/README.md)."""
    import httptools

    recorder = _Recorder()
    try:
        httptools.HttpRequestParser(recorder).feed_data(data)
    except httptools.HttpParserUpgrade:
        return recorder.complete, False
    except httptools.HttpParserError:
        return recorder.complete, True
    return recorder.complete, False


@pytest.mark.parametrize("vector", IN_SCOPE, ids=lambda v: v.id)
def test_the_parser_the_servers_use_agrees_with_the_vectors(vector: Vector):
    """The vectors, transcribed here, say what the llhttp the servers are
    built with does (the copies of the files are of several llhttp
    releases: STALE lists where the older ones differ)."""
    refused = vector.end in (REFUSED, CLOSED)
    assert _llhttp_verdict(vector.data) == (len(vector.complete), refused)
    hosted = with_host(vector)
    if hosted is not None:
        assert _llhttp_verdict(hosted) == (len(vector.complete), refused)


# -- (b) h11 as a second opinion ---------------------------------------------------------

def h11_reading(data: bytes) -> tuple[list[tuple[bytes, bytes, bytes]], str]:
    """What h11, as a server, makes of ``data`` followed by the end of the
    stream: the requests it read, (method, target, body) each, and how it
    stopped: "refused" (a RemoteProtocolError: what does not parse, or the
    stream's end inside a request), "closed" (the stream ended between
    requests, or after one that closes the connection), "incomplete" (h11
    waits for more, having read all)."""
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    requests, current = [], None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:   # what does not parse, or ends inside a message
            return requests, "refused"
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return requests, "incomplete"
        if isinstance(event, h11.ConnectionClosed):
            return requests, "closed"
        if isinstance(event, h11.Request):
            current = [event.method, event.target, b""]
        elif isinstance(event, h11.Data):
            current[2] += event.data
        elif isinstance(event, h11.EndOfMessage):
            requests.append((current[0], current[1], bytes(current[2])))
            current = None
            conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is h11.MUST_CLOSE:
                return requests, "closed"
            conn.start_next_cycle()


@dataclass
class Generated:
    """A generated request: its parts, the hostile class applied to it (if
    any), and its bytes."""
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunked: bool
    hostile: str | None = None
    prefix: bytes = b""
    eol: bytes = b"\r\n"
    chunk_lines: list[bytes] | None = None   # the chunked body as sent, where a class made it
    raw_fields: bytes | None = None          # the header lines as sent, where a class made them

    def render(self) -> bytes:
        eol = self.eol
        head = self.prefix + b"%s %s %s%s" % (self.method, self.target, self.version, eol)
        if self.raw_fields is not None:
            head += self.raw_fields
        else:
            head += b"".join(b"%s: %s%s" % (name, value, eol) for name, value in self.headers)
        head += eol
        if self.chunk_lines is not None:
            return head + b"".join(self.chunk_lines)
        if self.chunked:
            return head + chunk(self.body, [len(self.body)])
        return head + self.body


def chunk(body: bytes, sizes: list[int], size_line=b"%x\r\n", last=b"0\r\n\r\n") -> bytes:
    out, at = [], 0
    for size in sizes:
        piece = body[at:at + size]
        at += size
        if piece:
            out.append(size_line % len(piece) + piece + b"\r\n")
    return b"".join(out) + last


# The hostile classes: each changes one request. Where h11 and the servers
# part ways on one, DIFFERENCES says which way and why (docs/conformance.md).
def _set_header(req: Generated, name: bytes, value: bytes) -> None:
    req.headers.append((name, value))


def _chunked_with(req: Generated, size_line: bytes = b"%x\r\n", data_end: bytes = b"\r\n",
                  last: bytes = b"0\r\n\r\n") -> None:
    req.headers = [(n, v) for n, v in req.headers if n.lower() != b"content-length"]
    req.headers.append((b"Transfer-Encoding", b"chunked"))
    body = req.body or b"abc"
    req.body = body
    req.chunk_lines = [size_line % len(body) + body + data_end, last]


def _te(value: bytes):
    def apply(req: Generated) -> None:
        _chunked_with(req)
        req.headers = [(n, value if n == b"Transfer-Encoding" else v) for n, v in req.headers]
    return apply


def _with_fields(extra: bytes):
    def apply(req: Generated) -> None:
        req.raw_fields = b"".join(b"%s: %s\r\n" % field for field in req.headers) + extra
    return apply


def _cl_twice(second: bytes | None):
    def apply(req: Generated) -> None:
        req.chunked = False
        req.headers = [(n, v) for n, v in req.headers
                       if n.lower() not in (b"content-length", b"transfer-encoding")]
        length = b"%d" % len(req.body)
        req.headers += [(b"Content-Length", length),
                        (b"Content-Length", length if second is None else second)]
    return apply


def _cl_value(value: bytes):
    def apply(req: Generated) -> None:
        req.chunked = False
        req.headers = [(n, v) for n, v in req.headers
                       if n.lower() not in (b"content-length", b"transfer-encoding")]
        req.headers.append((b"Content-Length", value.replace(b"N", b"%d" % len(req.body))))
    return apply


def _cl_and_te(req: Generated) -> None:
    _chunked_with(req)
    req.headers.append((b"Content-Length", b"%d" % len(req.body)))


def _set(**changes):
    def apply(req: Generated) -> None:
        for name, value in changes.items():
            setattr(req, name, value)
    return apply


def _no_host(req: Generated) -> None:
    req.headers = [(n, v) for n, v in req.headers if n.lower() != b"host"]


HOSTILE = {
    "bare CR in a value": lambda req: _set_header(req, b"X-Test", b"a\rb"),
    "bare LF in a value": lambda req: _set_header(req, b"X-Test", b"a\nb"),
    "NUL in a value": lambda req: _set_header(req, b"X-Test", b"a\x00b"),
    "control character in a value": lambda req: _set_header(req, b"X-Test", b"a\x01b"),
    "DEL in a value": lambda req: _set_header(req, b"X-Test", b"a\x7fb"),
    "obs-text in a value": lambda req: _set_header(req, b"X-Test", b"caf\xe9 \xff"),
    "obs-fold": _with_fields(b"X-Test: a\r\n b\r\n"),
    "bare LF line endings": _set(eol=b"\n"),
    "space before the colon": lambda req: _set_header(req, b"X-Test ", b"a"),
    "Content-Length and Transfer-Encoding": _cl_and_te,
    "duplicate equal Content-Length": _cl_twice(None),
    "duplicate different Content-Length": _cl_twice(b"999"),
    "Content-Length list": _cl_value(b"N, N"),
    "Content-Length with a sign": _cl_value(b"+N"),
    "Content-Length with leading zeros": _cl_value(b"000N"),
    "Transfer-Encoding ' chunked'": _te(b"  chunked"),
    "Transfer-Encoding 'Chunked'": _te(b"Chunked"),
    "Transfer-Encoding 'chunked, identity'": _te(b"chunked, identity"),
    "Transfer-Encoding 'gzip, chunked'": _te(b"gzip, chunked"),
    "Transfer-Encoding 'chunked, chunked'": _te(b"chunked, chunked"),
    "Transfer-Encoding 'xchunked'": _te(b"xchunked"),
    "Transfer-Encoding twice": lambda req: (_chunked_with(req), _set_header(
        req, b"Transfer-Encoding", b"chunked")),
    "chunk size with an extension": lambda req: _chunked_with(req, size_line=b"%x;ext=1\r\n"),
    "chunk size with a quoted extension": lambda req: _chunked_with(
        req, size_line=b'%x;e="a b"\r\n'),
    "chunk extension after whitespace": lambda req: _chunked_with(req, size_line=b"%x; e=1\r\n"),
    "chunk size with a sign": lambda req: _chunked_with(req, size_line=b"+%x\r\n"),
    "chunk size in 0x": lambda req: _chunked_with(req, size_line=b"0x%x\r\n"),
    "chunk size with leading zeros": lambda req: _chunked_with(req, size_line=b"0000%x\r\n"),
    "chunk size that overflows": lambda req: _chunked_with(
        req, size_line=b"10000000000000000%x\r\n"),
    "chunk size with a space": lambda req: _chunked_with(req, size_line=b"%x \r\n"),
    "chunk size ended by LF": lambda req: _chunked_with(req, size_line=b"%x\n"),
    "chunk data ended by LF": lambda req: _chunked_with(req, data_end=b"\n"),
    "chunk data not ended": lambda req: _chunked_with(req, data_end=b""),
    "last chunk ended by LF": lambda req: _chunked_with(req, last=b"0\n\r\n"),
    "chunked body ended by LF": lambda req: _chunked_with(req, last=b"0\r\n\n"),
    "trailer field": lambda req: _chunked_with(req, last=b"0\r\nX-Trailer: t\r\n\r\n"),
    "unknown method": _set(method=b"FROB"),
    "lower-case method": _set(method=b"post"),
    "space in the target": _set(target=b"/echo /x"),
    "DEL in the target": _set(target=b"/echo\x7f"),
    "quote in the target": _set(target=b'/echo"x'),
    "HTTP/1.2": _set(version=b"HTTP/1.2"),
    "empty line before the request line": _set(prefix=b"\r\n"),
    "no Host": _no_host,
    "two Hosts": lambda req: _set_header(req, b"Host", b"y"),
}

# How the servers and h11 part ways, by hostile class: "stricter", the
# servers refuse (4xx) what h11 reads; "laxer", they read what h11 refuses.
# docs/conformance.md explains each; test_a_difference_from_h11_is_pinned
# pins each.
DIFFERENCES = {
    "control character in a value": "stricter",
    "DEL in a value": "stricter",
    "obs-fold": "stricter",
    "bare LF line endings": "stricter",
    "Content-Length and Transfer-Encoding": "stricter",
    "duplicate equal Content-Length": "stricter",
    "Content-Length list": "stricter",
    "chunk extension after whitespace": "stricter",
    "chunk size with a space": "stricter",
    "chunked body ended by LF": "stricter",
    "unknown method": "stricter",
    "lower-case method": "stricter",
    "HTTP/1.2": "stricter",
    "Transfer-Encoding 'gzip, chunked'": "laxer",
    "empty line before the request line": "laxer",
}


def generate(rng: random.Random) -> list[Generated]:
    """A stream of 1-4 requests, about half of them with one hostile class."""
    requests = []
    for _ in range(rng.randint(1, 4)):
        method = rng.choice([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
        target = rng.choice([b"/echo", b"/echo?x=1", b"/echo?a=b&c=%20d", b"/echo/sub",
                             b"/ech%6F"])
        headers = [(b"Host", b"example.test")]
        for name, value in rng.sample([(b"Accept", b"*/*"), (b"User-Agent", b"vectors/1"),
                                       (b"Cookie", b"a=b; c=d"), (b"X-Empty", b""),
                                       (b"X-Spaces", b"a  b\tc")], rng.randint(0, 3)):
            headers.append((name, value))
        body, chunked = b"", False
        if method in (b"POST", b"PUT", b"PATCH"):
            alphabet = [b"a", b"Z", b"0", b" ", b"\r\n", b"\x00", b"\xff", b"GET / HTTP/1.1\r\n"]
            body = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            chunked = rng.random() < 0.3
            headers.append((b"Transfer-Encoding", b"chunked") if chunked
                           else (b"Content-Length", b"%d" % len(body)))
        version = b"HTTP/1.1" if rng.random() < 0.9 else b"HTTP/1.0"
        if rng.random() < 0.05:
            headers.append((b"Connection", b"close"))
        req = Generated(method, target, version, headers, body, chunked)
        if rng.random() < 0.5:
            req.hostile = rng.choice(sorted(HOSTILE))
            HOSTILE[req.hostile](req)
        requests.append(req)
    return requests


def _server_reading(kind: str, port: int, data: bytes,
                    expected: int) -> tuple[list[Response], bool]:
    """The responses of a server to ``data``: (the responses, whether the
    last is a refusal)."""
    responses, _, _ = exchange(port, data, expected, settle=0.2)
    refused = bool(responses) and responses[-1].status // 100 == 4 and not (
        kind == "http" and responses[-1].status in (404, 405))
    return responses, refused


def _same_request(kind: str, h11_request: tuple[bytes, bytes, bytes], response: Response) -> bool:
    method, target, body = h11_request
    if kind == "asgi":
        if response.status != 200:
            return False
        seen = response.seen()
        seen_target = seen["raw_path"] + ("?" + seen["query_string"]
                                          if seen["query_string"] else "")
        return (seen["method"].encode(), seen_target.encode("latin-1"),
                seen["body"].encode("latin-1")) == (method, target, body)
    if target.split(b"?")[0] != b"/echo":
        return response.status == 404
    if method not in (b"POST", b"PUT"):
        return response.status == 405
    return response.status == 200 and response.body == body


def compare_with_h11(kind: str, port: int, stream: list[Generated]) -> str | None:
    """Send ``stream``; None if the server framed it as h11 does, else the
    hostile class (in DIFFERENCES) that explains where they part; raises
    AssertionError for any other difference."""
    data = b"".join(req.render() for req in stream)
    h11_requests, h11_end = h11_reading(data)
    responses, refused = _server_reading(kind, port, data, len(h11_requests) + 1)
    answered = responses[:-1] if refused else responses
    what = (f"{data!r}\n  h11: {h11_requests} {h11_end}\n  {kind}: "
            f"{[(r.status, r.body[:80]) for r in responses]}")
    both = min(len(h11_requests), len(answered))
    for i in range(both):   # where both read a request, it is the same request
        assert _same_request(kind, h11_requests[i], answered[i]), what
    if len(h11_requests) == len(answered) and not (refused and h11_end == "closed"):
        return None   # the same requests; then the same end (or h11 refuses, and the
                      # server closes without a word)
    # They part at request ``both``: the one h11 or the server read and
    # the other did not. Its hostile class must say so, in that direction.
    at = stream[both] if both < len(stream) else None
    hostile = at.hostile if at is not None else None
    if len(h11_requests) > len(answered) and refused:
        if DIFFERENCES.get(hostile) == "stricter":
            return hostile
    elif len(h11_requests) < len(answered) and h11_end != "closed":
        if DIFFERENCES.get(hostile) == "laxer":
            return hostile
    raise AssertionError(f"an unexplained difference ({hostile}): {what}")


STREAMS = 200
SEED = 20261207


def test_generated_streams_are_framed_as_h11_frames_them(server):
    """Seeded streams of pipelined requests, hostile ones among them: the
    servers frame each the way h11 does, but for the classes of
    DIFFERENCES, in their direction."""
    kind, port = server
    rng = random.Random(SEED)
    failures, seen = [], set()
    for n in range(STREAMS):
        stream = generate(rng)
        try:
            hostile = compare_with_h11(kind, port, stream)
        except AssertionError as exc:
            failures.append(f"stream {n}: {exc}")
        else:
            seen.add(hostile)
    assert not failures, "\n".join(failures[:5])
    # Enough streams that most classes were met (the pins cover all of them).
    met = seen & set(DIFFERENCES)
    assert len(met) >= len(DIFFERENCES) * 2 // 3, sorted(met)


PINS = {
    "control character in a value": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Test: a\x01b\r\n\r\n",
    "DEL in a value": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Test: a\x7fb\r\n\r\n",
    "obs-fold": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n b\r\n\r\n",
    "bare LF line endings": b"POST /echo HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc",
    "Content-Length and Transfer-Encoding":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n3\r\nabc\r\n0\r\n\r\n",
    "duplicate equal Content-Length":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "Content-Length list": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
    "chunk extension after whitespace":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3; e=1\r\nabc\r\n0\r\n\r\n",
    "chunk size with a space":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3 \r\nabc\r\n0\r\n\r\n",
    "chunked body ended by LF":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\n",
    "unknown method": b"FROB /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    "lower-case method": b"post /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    "HTTP/1.2": b"GET /echo HTTP/1.2\r\nHost: x\r\n\r\n",
    "Transfer-Encoding 'gzip, chunked'":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
    "empty line before the request line":
        b"\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
}


@pytest.mark.parametrize("hostile", sorted(DIFFERENCES))
def test_a_difference_from_h11_is_pinned(server, hostile):
    """Each class of difference, on an example: which side reads it, and
    what the servers answer."""
    kind, port = server
    data = PINS[hostile]
    h11_requests, h11_end = h11_reading(data)
    responses, _, closed = exchange(port, data, 1)
    assert len(responses) == 1 and closed, responses
    if DIFFERENCES[hostile] == "stricter":
        assert len(h11_requests) == 1 and h11_end == "closed"
        assert responses[0].status == 400
    else:
        assert h11_requests == [] and h11_end == "refused"
        # Read as llhttp reads it: the chunked framing (its codings before
        # chunked left to the app), or the request after the empty line.
        if kind == "asgi":
            assert responses[0].seen()["body"] == "abc"
        else:
            assert responses[0].status == 200 and responses[0].body == b"abc"


def test_every_difference_is_pinned():
    assert sorted(PINS) == sorted(DIFFERENCES)
    assert set(DIFFERENCES) <= set(HOSTILE)


# -- the server bugs the replays found, one test each ----------------------------------------
# (docs/conformance.md, "Server bugs": each failed before its fix.)

@pytest.mark.parametrize("kind", SERVERS)
def test_a_request_with_an_upgrade_not_taken_is_answered_once_with_its_body(backend, kind):
    proc, port = _start(kind, backend)
    try:
        responses, rest, closed = exchange(
            port, b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                  b"Content-Length: 5\r\n\r\nhello", 1)
    finally:
        _stop_quietly(proc)
    assert [r.status for r in responses] == [200] and rest == b"" and closed
    body = responses[0].seen()["body"] if kind == "asgi" else responses[0].body.decode()
    assert body == "hello"


@pytest.mark.parametrize("kind", SERVERS)
def test_a_request_with_a_body_that_closes_is_answered_once(backend, kind):
    """The bytes after a request that closes the connection are not read:
    no answer is owed to them (llhttp: "Data after `Connection: close`")."""
    proc, port = _start(kind, backend)
    try:
        for close in (b"HTTP/1.1\r\nHost: x\r\nConnection: close", b"HTTP/1.0\r\nHost: x"):
            responses, rest, closed = exchange(
                port, b"POST /echo %s\r\nContent-Length: 4\r\n\r\nq=42GET / HTTP/1.1\r\n"
                      b"Host: x\r\n\r\n" % close, 1)
            assert [r.status for r in responses] == [200] and rest == b"" and closed
    finally:
        _stop_quietly(proc)


@pytest.mark.parametrize("kind", SERVERS)
def test_requests_before_a_refused_one_are_each_answered_in_order(backend, kind):
    """RFC 9112 §9.3.2: responses in the order of the requests. Pipelined
    behind one whose response is in flight (its app waits for its body),
    two valid requests and a bad one: each valid one gets its answer, the
    bad one the 400."""
    proc, port = _start(kind, backend)
    try:
        responses, rest, closed = exchange(
            port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
                  b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /c HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", 3)
    finally:
        _stop_quietly(proc)
    assert [r.status for r in responses] == [200, 200 if kind == "asgi" else 404, 400], responses
    if kind == "asgi":
        assert responses[1].seen()["raw_path"] == "/b"


@pytest.mark.parametrize("kind", SERVERS)
def test_a_refused_head_request_gets_no_content(backend, kind):
    proc, port = _start(kind, backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"HEAD / HTTP/1.1\r\n\r\n")   # no Host: a 400
            out = conftest.recv_until_eof(sock)
    finally:
        _stop_quietly(proc)
    assert conftest.status_of(out) == 400
    # No content, and framed so whatever the client took the method for.
    assert out.endswith(b"\r\n\r\n") and b"\r\ncontent-length: 0\r\n" in out.lower(), out


@pytest.mark.parametrize("version", [b"", b" HTTP/2.0"])
@pytest.mark.parametrize("kind", SERVERS)
def test_a_response_is_in_a_version_the_server_speaks(backend, kind, version):
    """llhttp takes "GET /" (HTTP/0.9) and "HTTP/2.0" request lines; the
    answer is a refusal or an HTTP/1.x response, never in a version the
    server does not speak."""
    proc, port = _start(kind, backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /%s\r\nHost: x\r\n\r\n" % version)
            out = conftest.recv_until_eof(sock)
    finally:
        _stop_quietly(proc)
    assert out.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), out[:40]


@pytest.mark.parametrize("kind", SERVERS)
def test_the_end_of_the_stream_inside_a_body_ends_the_request(backend, kind):
    """The client sends part of a body and ends its side: the rest cannot
    come, so the server closes (an answer, 400, is allowed) within
    moments, rather than keeping the connection and the app waiting (serve
    asgi kept both, for ever)."""
    proc, port = _start(kind, backend)
    try:
        # Far above a close "at once", below the 5 s keep-alive timeout (which
        # would close it too, and hide a hang).
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            sock.shutdown(socket.SHUT_WR)
            try:
                out = conftest.recv_until_eof(sock)
            except TimeoutError:
                out = None
    finally:
        _stop_quietly(proc)
    assert out is not None, "the connection was still open after 3 s"
    assert out == b"" or conftest.status_of(out) == 400


def test_an_app_that_returns_after_a_disconnect_logs_no_error(backend):
    proc, port = _start("asgi", backend)
    try:
        # A body refused part way (a bad chunk): to the app, the client is gone.
        exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\nzz\r\n", 1)
    finally:
        log = _stop_quietly(proc)
    assert "ERROR" not in log, log


# -- (c) one regression test per class of advisory -------------------------------------------

SMUGGLED = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("framing", [
    b"Content-Length: %(n)d\r\nTransfer-Encoding: chunked",          # CL.TE
    b"Transfer-Encoding: chunked\r\nContent-Length: %(n)d",          # TE.CL
    b"Content-Length: %(n)d\r\nTransfer-Encoding: xchunked",
    b"Content-Length: %(n)d\r\nTransfer-Encoding: chunked, identity",
    b"Content-Length: %(n)d\r\nTransfer-Encoding : chunked",
    b"Content-Length: %(n)d\r\nTransfer-Encoding:\x0bchunked",
    b"Content-Length: %(n)d\r\nTransfer-Encoding:\r\n chunked",       # obs-fold
    b"Content-Length: %(n)d\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x",
    b"Content-Length: %(n)d\r\nTransfer_Encoding: chunked",          # not the field
    b"Content-Length: %(n)d\r\nX: a\rTransfer-Encoding: chunked",     # bare CR
    b"Content-Length: %(n)d\r\nX: a\nTransfer-Encoding: chunked",     # bare LF
    b"Content-Length: %(n)d\r\nContent-Length: 0",
    b"Content-Length: 0\r\nContent-Length: %(n)d",
    b"Content-Length: %(n)d\r\n 0",                                   # obs-fold
], ids=lambda f: re.sub(rb"[^A-Za-z0-9]+", b"-", f.replace(b"%(n)d", b"N")).decode())
def test_request_smuggling_by_framing(server, framing):
    """A front end that takes the Content-Length would send the whole body
    below as one request; a server that takes the chunked framing (or a
    second length) would find a second, smuggled request in it. The
    server refuses the request, or frames it by its one Content-Length:
    never is /smuggled answered."""
    kind, port = server
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + framing % {b"n": len(SMUGGLED)} + b"\r\n\r\n"
    responses, rest, _ = exchange(port, head + SMUGGLED, 1)
    assert len(responses) == 1 and rest == b"", (responses, rest)
    response = responses[0]
    assert response.status == 400 or (response.status == 200 and (
        response.body == SMUGGLED if kind == "http"
        else response.seen()["body"].encode() == SMUGGLED)), response


@pytest.mark.parametrize("chunked", [
    b"5\nhello\r\n0\r\n\r\n",                # chunk-size line ended by LF
    b"5\rhello\r\n0\r\n\r\n",                # by CR
    b"5\r\nhello\n0\r\n\r\n",                # chunk data ended by LF
    b"5\r\nhelloXX0\r\n\r\n",                # not ended
    b"5\r\nhello\r\n0\n\r\n",                # last chunk ended by LF
    b"5\r\nhello\r\n0\r\n\n",                # the body
    b"5 \r\nhello\r\n0\r\n\r\n",             # whitespace after the size
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"fffffffffffffffff5\r\nhello\r\n0\r\n\r\n",   # overflows 64 bits
    b"5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n",   # bare CR in a trailer
], ids=lambda c: re.sub(rb"[^A-Za-z0-9]+", b"-", c).decode())
def test_request_smuggling_by_chunk_lines(server, chunked):
    """Chunk lines ended or sized otherwise than RFC 9112 §7.1 says: a
    refusal, and nothing after it read as a request."""
    _, port = server
    data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
            + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    responses, rest, _ = exchange(port, data, 1)
    assert [r.status for r in responses] == [400] and rest == b"", (responses, rest)


@pytest.mark.parametrize("target", [b"/a\rb", b"/a\nb", b"/a\x00b", b"/a b", b"/a\x7fb",
                                    b"/a\tb", b"/\xc3\xa9"])
def test_header_injection_by_the_request_target(server, target):
    """A target with a byte that could end the request line, or that is not
    a URI character: refused (an app echoing it cannot be made to split
    its response, test_hostile.py checks the response side)."""
    _, port = server
    responses, rest, _ = exchange(port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target, 1)
    assert [r.status for r in responses] == [400], (responses, rest)


@pytest.mark.parametrize("name", [b"X Y", b"X\x00Y", b"X\xffY", b"X(Y)", b"X/Y", b"X@Y",
                                  b"X\"Y", b"X\x7fY", b""])
def test_header_injection_by_a_field_name(server, name):
    _, port = server
    responses, _, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n%s: v\r\n\r\n" % name, 1)
    assert [r.status for r in responses] == [400], responses


def test_trailer_fields_do_not_reach_serve_http_handlers_as_headers():
    """Trailers come after the body, unchecked (Host was checked at the head):
    a handler that reads request.headers must see the head's fields."""
    from test_http import exchange as in_process
    from uringio.http import Response, Router

    router = Router()

    @router.route("/h", methods=("POST",))
    def headers(req):
        return Response(json.dumps({k.decode(): v.decode() for k, v in req.headers.items()}))

    (head, body), = in_process(router, b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Type: a/b\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n"
                                       b"Host: evil\r\nContent-Type: evil\r\nX-Late: 1\r\n\r\n")
    seen = json.loads(body)
    assert seen["host"] == "x" and seen["content-type"] == "a/b" and "x-late" not in seen


def test_trailer_fields_do_not_reach_asgi_apps_as_headers(backend):
    proc, port = start_server(["-m", "uringio", "serve", "asgi", "asgi_raw:app", "--app-dir",
                               APPS, "--port", "0"], backend)
    try:
        responses, _, _ = exchange(port, b"POST /echo-head HTTP/1.1\r\nHost: x\r\n"
                                         b"Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n"
                                         b"Host: evil\r\nX-Late: 1\r\n\r\n", 1)
    finally:
        _stop_quietly(proc)
    assert responses[0].status == 200
    assert b"evil" not in responses[0].body and b"x-late" not in responses[0].body


def _bounded(kind: str, port: int, proc, head: bytes, piece, pieces: int,
             tail: bytes = b"") -> tuple:
    """Send ``head``, then ``piece(i)`` for i up to ``pieces`` while the
    server reads, then ``tail``; (the status it answered, the growth of its
    peak memory in KiB)."""
    peak = proc_status(proc.pid, "VmHWM")
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            for i in range(pieces):
                sock.sendall(piece(i))
                if conftest.readable(sock):
                    break   # answered before the end: the server stopped reading
            else:
                sock.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            sock.shutdown(socket.SHUT_WR)
            out = conftest.recv_until_eof(sock)
        except (OSError, TimeoutError):
            pass
    growth = proc_status(proc.pid, "VmHWM") - peak
    return (conftest.status_of(out) if out else None), growth


# What a connection may make a server hold, at most, in the cases below:
# the limits are 16 KiB (serve http) and 64 KiB (serve asgi) of head, and
# a few socket buffers of slack. Feeding each case 8 MiB, a server that
# buffered it would grow by that much.
GROWTH_LIMIT_KIB = 4 * 1024
FED = 8 * 1024 * 1024


BOUNDED_CASES = ["one-field", "many-fields", "target", "unterminated", "chunk-size-zeros"]


def _bounded_case(kind: str, port: int, proc, case: str) -> str | None:
    """Feed one oversized or unbounded field; what went wrong, or None."""
    def piece(i: int) -> bytes:
        if case in ("many-fields", "trailers"):   # 1000 fields, each of its own name
            return b"".join(b"X-%d-%d: %s\r\n" % (i, j, b"v" * 50) for j in range(1000))
        return (b"0" if case == "chunk-size-zeros" else b"a") * 65536

    head = {
        "one-field": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ",
        "many-fields": b"GET / HTTP/1.1\r\nHost: x\r\n",
        "target": b"GET /",
        "unterminated": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b",
        "trailers": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"1\r\nz\r\n0\r\n",
        "chunk-size-zeros": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    }[case]
    tail = b"5\r\nhello\r\n0\r\n\r\n" if case == "chunk-size-zeros" else b""
    status, growth = _bounded(kind, port, proc, head, piece, FED // len(piece(0)), tail)
    if growth >= GROWTH_LIMIT_KIB:
        return f"{case}: peak memory grew by {growth} KiB"
    wanted = (200, 400) if case == "chunk-size-zeros" else (400, 413, 414, 431)
    return None if status in wanted else f"{case}: answered {status}"


def test_a_field_without_bound_is_refused_without_buffering_it(fresh_server):
    """Oversized and unbounded fields: a header line, many of them, a
    target, a head that never ends, a chunk-size line of 8 MiB of leading
    zeros. Each is refused (4xx) -- or, for the chunk size, which is a
    number however long, taken -- and none is buffered whole (the peak
    memory of the server grows by less than GROWTH_LIMIT_KIB for each)."""
    kind, port, proc = fresh_server
    failures = [_bounded_case(kind, port, proc, case) for case in BOUNDED_CASES]
    assert not any(failures), failures


def test_a_trailer_section_without_bound_is_refused_without_buffering_it(fresh_server):
    kind, port, proc = fresh_server
    assert _bounded_case(kind, port, proc, "trailers") is None
