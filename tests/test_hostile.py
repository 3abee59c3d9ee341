"""Hostile input to both servers (serve asgi, serve http) on both backends:
response splitting by an app's header values, forged proxy headers, RFC
9112's Host rule, unbounded chunk extensions, and WebSocket handshakes with
bytes wsproto cannot read. Each has a defined answer: a 400 or a 500, never
bytes the app did not write, a hang, or an error in the server's log."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO, raw, recv_until_eof, start_server, status_of, stop_server

APPS = os.path.join(REPO, "tests", "apps")


def _asgi(backend: str, *args: str):
    return start_server(["-m", "uringio", "serve", "asgi", "hostile_app:app", "--app-dir", APPS,
                         "--port", "0", *args], backend)


def _http(backend: str, *args: str):
    return start_server(["-m", "uringio", "serve", "http", "--port", "0", *args], backend)


def _stopped_quietly(proc) -> str:
    """Stop the server; its log, which must hold no error and no traceback."""
    assert stop_server(proc) == 0
    log = proc.stderr.read()
    assert "Traceback" not in log and "ERROR" not in log, log
    return log


@pytest.fixture
def asgi_server(backend):
    proc, port = _asgi(backend)
    yield port
    _stopped_quietly(proc)


@pytest.fixture(params=["asgi", "http"])
def any_server(request, backend):
    """Either server, answering GET / and taking a POSTed body at /echo."""
    proc, port = (_asgi if request.param == "asgi" else _http)(backend)
    yield port
    _stopped_quietly(proc)


def _head_and_body(response: bytes) -> tuple[bytes, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


# -- response splitting ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/split-value", "/split-name", "/nul", "/bare-lf",
                                  "/space-in-name", "/split-streamed"])
def test_a_header_that_would_split_the_response_is_a_500(backend, path):
    proc, port = _asgi(backend)
    try:
        out = raw(port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                  % path.encode())
    finally:
        assert stop_server(proc) == 0
    assert status_of(out) == 500
    assert b"evil" not in out.lower() and b"set-cookie" not in out.lower()
    assert b"x-a" not in out
    log = proc.stderr.read()
    assert "invalid" in log and "response header" in log   # the app's error, logged


def test_a_header_that_would_split_is_refused_without_breaking_the_connection(backend):
    proc, port = _asgi(backend)
    try:
        out = raw(port, b"GET /split-value HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    finally:
        assert stop_server(proc) == 0
    first, second = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"500") and second.startswith(b"200")


@pytest.mark.parametrize("headers, content_type", [
    ([("X-A", "1\r\nSet-Cookie: evil=1")], "text/plain"),
    ([("X-A\r\nSet-Cookie", "evil=1")], "text/plain"),
    (None, "text/plain\r\nSet-Cookie: evil=1"),
])
def test_serve_http_refuses_a_handler_header_that_would_split(caplog, headers, content_type):
    from test_http import exchange
    from uringio.http import Response, Router
    router = Router()

    @router.route("/bad")
    def bad(request):
        return Response(b"x", headers=headers, content_type=content_type)

    @router.route("/ok")
    def ok(request):
        return Response(b"fine")

    get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
    with caplog.at_level("ERROR", logger="uringio"):
        responses = exchange(router, get % b"/bad" + get % b"/ok")
    assert [head.split(b"\r\n")[0] for head, _ in responses] == [
        b"HTTP/1.1 500 Internal Server Error", b"HTTP/1.1 200 OK"]
    assert all(b"evil" not in head for head, _ in responses)
    assert any("invalid" in r.getMessage() or "invalid" in str(r.exc_info[1])
               for r in caplog.records)


# -- statuses without content, and statuses that are not a response ----------------------

def _client_reading(data: bytes, methods: list[bytes]) -> list[tuple[int, bytes]]:
    """(status, content) of each response in ``data``, to requests of
    ``methods``, as h11 reads them as a client: it knows 204 and 304 have no
    content, so bytes written after one are read as the next response."""
    import h11
    out = []
    for method in methods:
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        client.receive_data(data)
        status, content = None, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"{event!r} reading {data!r}")
        out.append((status, content))
        data = client.trailing_data[0]
    assert data == b"", data
    return out


@pytest.mark.parametrize("path", ["/status/204", "/status/304", "/status/204/streamed",
                                  "/status/304/streamed"])
def test_an_app_gives_no_content_with_204_or_304(backend, path):
    """An app that gives content with 204 or 304: none is written (a client
    would read it as the start of the next response)."""
    proc, port = _asgi(backend)
    try:
        out = raw(port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    finally:
        _stopped_quietly(proc)
    (status, content), (after, _) = _client_reading(out, [b"GET", b"GET"])
    assert (status, content, after) == (int(path.split("/")[2]), b"", 200)
    assert b"hello" not in out


@pytest.mark.parametrize("path", ["/status/100", "/status/101", "/status/199",
                                  "/status/101/streamed", "/status/1000"])
def test_an_app_status_that_is_not_a_final_response_is_a_500(backend, path):
    """A 1xx is interim to a client, which would take the next response
    for this one's: the app's error, answered 500, the connection kept."""
    proc, port = _asgi(backend)
    try:
        out = raw(port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    finally:
        assert stop_server(proc) == 0
    assert [status for status, _ in _client_reading(out, [b"GET", b"GET"])] == [500, 200]
    assert b"hello" not in out and b"x-status" not in out
    assert "status must be an int from 200 to 999" in proc.stderr.read()


def test_an_http09_request_is_answered_in_http11_whatever_the_status(backend):
    proc, port = _asgi(backend)
    try:
        out = raw(port, b"GET /status/299\r\n\r\n")
    finally:
        _stopped_quietly(proc)
    assert out.startswith(b"HTTP/1.1 299 "), out


def _serve_http_bytes(router, request: bytes) -> bytes:
    from test_http import FakeConn
    from uringio.http import HTTPProtocol
    conn = FakeConn()
    protocol = HTTPProtocol(router)
    protocol.connection_made(conn)
    protocol.data_received(request)
    return bytes(conn.data)


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_serve_http_writes_no_content_with_204_or_304(status, method):
    from uringio.http import Response, Router
    router = Router()

    @router.route("/s", methods=("GET", "HEAD"))
    def no_content(request):
        return Response(b"hello", status=status)

    out = _serve_http_bytes(router, b"%s /s HTTP/1.1\r\nHost: x\r\n\r\n" % method * 2)
    assert _client_reading(out, [method, method]) == [(status, b""), (status, b"")]
    assert b"hello" not in out and b"content-length" not in out.lower()


@pytest.mark.parametrize("status", [100, 101, 199, 1000, "200"])
def test_serve_http_answers_a_handler_status_that_is_not_final_with_500(status, caplog):
    from uringio.http import Response, Router
    router = Router()

    @router.route("/s")
    def interim(request):
        return Response(b"hello", status=status)

    with caplog.at_level("ERROR", logger="uringio"):
        out = _serve_http_bytes(router, b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    assert [s for s, _ in _client_reading(out, [b"GET", b"GET"])] == [500, 500]
    assert b"hello" not in out
    assert any("status must be an int" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


# -- proxy headers ----------------------------------------------------------------------

def _seen(port: int, *headers: bytes) -> dict:
    out = raw(port, b"GET /client HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n"
              % b"".join(h + b"\r\n" for h in headers))
    assert status_of(out) == 200, out
    return json.loads(_head_and_body(out)[1])


@pytest.mark.parametrize("allow", ["127.0.0.1", "127.0.0.0/8", "*"])
def test_proxy_headers_of_a_trusted_peer_name_the_client(backend, allow):
    proc, port = _asgi(backend, "--proxy-headers", "--forwarded-allow-ips", allow)
    try:
        seen = _seen(port, b"X-Forwarded-For: 1.2.3.4", b"X-Forwarded-Proto: https")
        assert seen["client"] == ["1.2.3.4", 0] and seen["scheme"] == "https"
        # Read from the right: the client wrote the leftmost entry itself.
        seen = _seen(port, b"X-Forwarded-For: 6.6.6.6, 1.2.3.4")
        want = "6.6.6.6" if allow == "*" else "1.2.3.4"   # * trusts every hop, as uvicorn
        assert seen["client"] == [want, 0] and seen["scheme"] == "http"
        # Two header lines are one list; a trusted proxy in it is passed over.
        if allow != "*":
            seen = _seen(port, b"X-Forwarded-For: 6.6.6.6", b"X-Forwarded-For: 1.2.3.4, 127.0.0.1")
            assert seen["client"] == ["1.2.3.4", 0]
        # A scheme that is none is ignored.
        seen = _seen(port, b"X-Forwarded-Proto: javascript")
        assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"
    finally:
        _stopped_quietly(proc)


@pytest.mark.parametrize("args", [[], ["--proxy-headers", "--forwarded-allow-ips", "10.0.0.1"],
                                  ["--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8"]])
def test_proxy_headers_of_an_untrusted_peer_change_nothing(backend, args):
    proc, port = _asgi(backend, *args)
    try:
        seen = _seen(port, b"X-Forwarded-For: 1.2.3.4", b"X-Forwarded-Proto: https")
        assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"
    finally:
        _stopped_quietly(proc)


@pytest.mark.parametrize("value", ["10.0.0.300", "example.com", "10.0.0.0/33"])
def test_a_bad_forwarded_allow_ips_is_a_one_line_error(value):
    done = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi", "hostile_app:app",
                           "--app-dir", APPS, "--proxy-headers", "--forwarded-allow-ips",
                           f"127.0.0.1,{value}"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and value in done.stderr
    assert "Traceback" not in done.stderr


# -- RFC 9112 §3.2: Host -----------------------------------------------------------------

@pytest.mark.parametrize("request_head, status", [
    (b"GET / HTTP/1.1\r\n", 400),                                   # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n", 400),             # two
    (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n", 400),             # two, however written
    (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n", 400),             # two, in 1.0 too
    (b"GET / HTTP/1.0\r\n", 200),                                   # 1.0 may omit it
    (b"GET / HTTP/1.1\r\nHost: a\r\n", 200),
    (b"GET / HTTP/1.1\r\nHost:\r\n", 200),                          # empty is allowed
])
def test_host_is_required_once(any_server, request_head, status):
    out = raw(any_server, request_head + b"Connection: close\r\n\r\n")
    assert status_of(out) == status, out


def test_a_request_without_host_is_refused_after_the_one_before_is_answered(any_server):
    out = raw(any_server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    statuses = [int(part[:3]) for part in out.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [200, 400]


# -- chunk extensions ---------------------------------------------------------------------

def _chunked(port: int, chunks: list[bytes], path: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n" % path)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass   # refused part way: what was answered is below
        return recv_until_eof(sock)


@pytest.fixture(params=["asgi", "http"])
def body_server(request, backend):
    """Either server and the path that reads a body: (port, path)."""
    if request.param == "asgi":
        proc, port = _asgi(backend)
        path = b"/client"
    else:
        proc, port = _http(backend, "--max-body", str(1 << 20))
        path = b"/echo"
    yield port, path
    _stopped_quietly(proc)


def test_chunk_extensions_are_bounded(body_server):
    port, path = body_server
    # One extension of 1 MiB on one chunk, then the same spread over many.
    huge = [b"1;x=" + b"a" * (1 << 20) + b"\r\nz\r\n0\r\n\r\n"]
    many = [b"1;e=%s\r\nz\r\n" % (b"b" * 1000) for _ in range(100)] + [b"0\r\n\r\n"]
    for chunks in (huge, many):
        out = _chunked(port, chunks, path)
        assert status_of(out) == 400, out[:200]


def test_a_few_chunk_extensions_are_ignored(body_server):
    port, path = body_server
    out = _chunked(port, [b"3;name=value;flag\r\nabc\r\n2;x=\"q\"\r\nde\r\n0\r\n\r\n"], path)
    assert status_of(out) == 200
    body = _head_and_body(out)[1]
    assert body == b"abcde" or json.loads(body)["body"] == 5


# -- WebSocket handshakes -------------------------------------------------------------------

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\n")
KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


@pytest.mark.parametrize("extra, status", [
    (KEY + b"Sec-WebSocket-Protocol: \xff\xfe\r\n", 400),       # granian CVE-2026-42544
    (KEY + b"Sec-WebSocket-Extensions: \xff\xfe\r\n", 400),
    (KEY + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=abc\r\n",
     400),
    (b"", 400),                                                   # no key
])
def test_a_handshake_wsproto_cannot_take_is_answered_quietly(backend, extra, status):
    proc, port = _asgi(backend)
    try:
        out = raw(port, UPGRADE + extra + b"\r\n")
        assert status_of(out) == status, out
        # The server goes on: a good handshake is accepted.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(UPGRADE + KEY + b"\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    finally:
        _stopped_quietly(proc)


def test_a_refused_body_still_being_sent_gets_its_answer_not_a_reset(body_server):
    """Refused at once (413: the length is over the limit), the client goes
    on sending its body: the server reads and drops it until the client's
    FIN, so closing does not reset the connection under our answer."""
    port, path = body_server
    length = 1 << 31
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path, length))
        for _ in range(64):   # 4 MiB of it, past every socket buffer
            sock.sendall(b"x" * 65536)
        sock.shutdown(socket.SHUT_WR)
        out = recv_until_eof(sock)
    assert status_of(out) == 413


# -- found by the fuzzers (fuzz/corpus/*/regress-*) ----------------------------------------

def test_a_one_letter_header_name_leaves_every_other_bytes_alone():
    """A header named "X": its lower-case name was made by lowering, in place,
    CPython's one shared b"X", after which every b"X" in the process read
    b"x" -- request bodies, values, literals."""
    from test_http import exchange
    from uringio.http import Response, Router
    router = Router()

    @router.route("/echo", methods=("POST",))
    def echo(request):
        return Response(request.body)

    out = exchange(router, b"POST /echo HTTP/1.1\r\nHost: h\r\nX: 1\r\nContent-Length: 1\r\n\r\nX"
                           b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nX")
    assert [body for _, body in out] == [b"X", b"X"]
    assert bytes([88]) == b"X"


def test_a_one_letter_header_name_on_the_asgi_path(backend):
    proc, port = start_server(["-m", "uringio", "serve", "asgi", "asgi_raw:app", "--app-dir",
                               APPS, "--port", "0"], backend)
    try:
        out = raw(port, b"POST /echo-head HTTP/1.1\r\nHost: h\r\nX: 1\r\nContent-Length: 1\r\n"
                        b"Connection: close\r\n\r\nX")
    finally:
        _stopped_quietly(proc)
    assert b"(b'x', b'1')" in out and out.endswith(b"b'X')"), out


def test_a_websocket_header_h11_refuses_is_a_400(asgi_server):
    """llhttp keeps a value's trailing space; wsproto's h11 refuses it, with
    an exception that escaped data_received and left the client unanswered."""
    out = raw(asgi_server, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Version: 13 \r\n" + KEY + b"\r\n")
    assert status_of(out) == 400, out
