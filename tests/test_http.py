"""The HTTP/1.1 server on both backends, with real clients: curl,
http.client, and raw sockets for what those hide."""

import http.client
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import raw, recv_until_eof, start_server, status_of, stop_server

HTTP = ["-m", "uringio", "serve", "http", "--host", "127.0.0.1", "--port", "0"]


@pytest.fixture
def static_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(b"<h1>hello</h1>\n")
    (root / "blob.bin").write_bytes(os.urandom(300_000))
    (tmp_path / "secret.txt").write_bytes(b"do not serve\n")
    return root


@pytest.fixture
def server(backend, static_dir):
    proc, port = start_server([*HTTP, "--static", str(static_dir), "--max-body", "100000",
                               "--header-timeout", "0.5"], backend)
    yield port
    assert stop_server(proc) == 0


def test_curl_plaintext_and_json(server):
    out = subprocess.run(["curl", "-si", f"http://127.0.0.1:{server}/"], capture_output=True,
                         timeout=10, check=True).stdout
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"\r\nDate: " in head
    assert b"Content-Length: 13" in head and body == b"Hello, World!"
    out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{server}/json"], capture_output=True,
                         timeout=10, check=True).stdout
    assert out == b'{"message":"Hello, World!"}'


def test_keep_alive_with_http_client(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    for _ in range(5):
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"Hello, World!"
    sock = conn.sock
    conn.request("GET", "/json")
    assert conn.getresponse().read() == b'{"message":"Hello, World!"}'
    assert conn.sock is sock   # one connection throughout
    conn.close()


def test_pipelined_requests_are_answered_in_order(server):
    reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in (b"/", b"/json", b"/nope"))
    out = raw(server, reqs + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
    assert statuses == [200, 200, 404, 200]
    assert out.index(b"Hello, World!") < out.index(b'{"message"') < out.index(b"not found")


def test_chunked_and_content_length_uploads(server):
    payload = os.urandom(50_000)
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    conn.request("POST", "/echo", body=iter([payload[:20_000], payload[20_000:]]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == payload
    conn.request("POST", "/echo", body=payload)
    assert conn.getresponse().read() == payload
    conn.close()


def test_head_has_headers_and_no_body(server):
    out = raw(server, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 13" in out
    assert out.endswith(b"\r\n\r\n")


def test_http_1_0_client_gets_answered_and_closed(server):
    out = raw(server, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 200 OK") and out.endswith(b"Hello, World!")
    assert b"Connection: close" in out


def test_static_file_bytes_and_content_type(server, static_dir):
    out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{server}/static/blob.bin"],
                         capture_output=True, timeout=10, check=True).stdout
    assert out == (static_dir / "blob.bin").read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
    conn.request("GET", "/static/index.html")
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "text/html" and resp.read() == b"<h1>hello</h1>\n"
    conn.close()


@pytest.mark.parametrize("static_read", ["0", "20000", "1000000"])
def test_pipelined_static_files_read_or_spliced_arrive_in_order(backend, static_dir,
                                                                static_read):
    # index.html (15 B) and blob.bin (300 KB), each read and written with its
    # head or spliced after it, between dynamic answers, all pipelined.
    proc, port = start_server([*HTTP, "--static", str(static_dir), "--static-read",
                               static_read], backend)
    try:
        paths = [b"/static/index.html", b"/static/blob.bin", b"/", b"/static/index.html",
                 b"/static/blob.bin", b"/static/index.html"]
        request = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in paths[:-1])
        request += b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % paths[-1]
        out = raw(port, request, timeout=10)
        bodies = []
        while out:
            head, _, rest = out.partition(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            bodies.append(rest[:length])
            out = rest[length:]
        files = {p: (static_dir / p.decode()[8:]).read_bytes() for p in paths if p != b"/"}
        assert bodies == [files.get(p, b"Hello, World!") for p in paths]
    finally:
        assert stop_server(proc) == 0


def test_static_files_under_the_threads_model(static_dir):
    proc, port = start_server([*HTTP, "--static", str(static_dir), "--model", "threads"],
                              "auto")   # the threads model has no loop: "blocking"
    try:
        out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/static/blob.bin"],
                             capture_output=True, timeout=10, check=True).stdout
        assert out == (static_dir / "blob.bin").read_bytes()
    finally:
        assert stop_server(proc) == 0


@pytest.mark.parametrize("path", [b"/static/../secret.txt", b"/static/%2e%2e/secret.txt",
                                  b"/static/..%2fsecret.txt", b"/static/missing.txt"])
def test_path_traversal_is_refused(server, path):
    out = raw(server, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
    assert status_of(out) in (403, 404)
    assert b"do not serve" not in out


def test_limits_answer_with_their_status_and_close(server):
    assert status_of(raw(server, b"NOT HTTP AT ALL\r\n\r\n")) == 400
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert status_of(raw(server, huge)) == 431
    many = (b"GET / HTTP/1.1\r\n"
            + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(300)) + b"\r\n")
    assert status_of(raw(server, many)) == 431
    big_body = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
    assert status_of(raw(server, big_body)) == 413
    chunked = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"4000\r\n" + b"z" * 0x4000 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n")
    assert status_of(raw(server, chunked)) == 413


def test_requests_after_one_that_closes_are_ignored(server):
    # The second request rides in the same segment as a "Connection:
    # close" one: it gets no answer, and the first answer arrives whole.
    get = b"GET / HTTP/1.1\r\nHost: x\r\n%s\r\n"
    out = raw(server, get % b"Connection: close\r\n" + get % b"")
    assert out.count(b"HTTP/1.1 200 OK") == 1 and out.endswith(b"Hello, World!")


def test_slowloris_gets_408_and_others_are_served_meanwhile(server):
    # The server's 0.5 s clock starts once it has the connection: after this.
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")   # never finishes its head
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello, World!"
        conn.close()
        out = recv_until_eof(slow)   # within the socket's timeout, or it raises
        elapsed = time.monotonic() - start
    assert status_of(out) == 408
    assert elapsed >= 0.49, elapsed   # not before the header timeout


def test_slow_but_complete_head_is_not_refused(backend, static_dir):
    # A head in pieces, each an incomplete head to the server when it comes,
    # the whole well within the header timeout: 0.1 s against 30 s, however
    # slow this machine is.
    proc, port = start_server([*HTTP, "--static", str(static_dir), "--header-timeout", "30"],
                              backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for piece in (b"GET / HT", b"TP/1.1\r\nHo", b"st: x\r\nConnection: close\r\n\r\n"):
                s.sendall(piece)
                time.sleep(0.05)   # a segment each, most likely (it passes either way)
            out = recv_until_eof(s)
        assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"Hello, World!")
    finally:
        assert stop_server(proc) == 0


class FakeConn:
    """What HTTPProtocol uses of a Connection, recording the bytes written."""

    class loop:
        @staticmethod
        def time():
            return time.monotonic()

        @staticmethod
        def call_later(delay, callback):
            class Timer:
                def cancel(self):
                    pass
            return Timer()

    def __init__(self):
        self.data = b""

    def write(self, data):
        self.data += data

    def close(self):
        pass

    def write_eof(self):
        pass


def exchange(router, request: bytes, piece: int = 0) -> list[tuple[bytes, bytes]]:
    """Feed ``request`` to a fresh protocol in process, whole or in pieces
    of ``piece`` bytes; (head, body) pairs of the responses (GET only: a
    body is what Content-Length says)."""
    from uringio.http import HTTPProtocol
    conn = FakeConn()
    protocol = HTTPProtocol(router)
    protocol.connection_made(conn)
    piece = piece or len(request)
    for at in range(0, len(request), piece):
        protocol.data_received(request[at:at + piece])
    out, data = [], conn.data
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        body = rest[:length]
        out.append((head, body))
        data = rest[len(body):]
    return out


def test_a_reused_response_follows_changes_to_it():
    # A fixed Response is formatted once and its bytes reused; setting its
    # body or content type must be seen by the next request, with the
    # right Content-Length.
    from uringio.http import Response, Router
    router = Router()
    shared = Response(b"first")

    @router.route("/")
    def fixed(request):
        return shared

    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert [body for _, body in exchange(router, get * 3)] == [b"first"] * 3
    shared.body = "second, longer"
    shared.content_type = "text/x-test"
    (head, body), = exchange(router, get)
    assert body == b"second, longer"
    assert b"Content-Length: 14" in head and b"Content-Type: text/x-test\r\n" in head
    # HTTP/1.0 takes the general path, which agrees.
    (head, body), = exchange(router, b"GET / HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and body == b"second, longer"


def test_routes_match_with_and_without_the_exact_url_table():
    # "/a" is found by the URL as sent; "/a?x=1" and "/caf%C3%A9" by the
    # decoded path; a route with non-ASCII characters can be registered.
    from uringio.http import Response, Router
    router = Router()

    @router.route("/a")
    def a(request):
        return Response(b"a:" + request.query)

    @router.route("/caf%C3%A9")
    def cafe(request):
        return Response(b"cafe")

    @router.route("/é")
    def e_acute(request):
        return Response(b"e")

    get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
    bodies = [body for _, body in exchange(router, get % b"/a" + get % b"/a?x=1"
                                           + get % b"/caf%C3%A9")]
    assert bodies == [b"a:", b"a:x=1", b"cafe"]


@pytest.mark.parametrize("piece", [0, 1, 2, 3, 7])
def test_each_request_reaches_its_handler_whole(piece):
    # Pipelined requests of every shape, each kept by the handler: a kept
    # request must keep its own parts (the per-request path reuses only a
    # request no one else holds), and header names arrive in lower case --
    # fed whole, or cut into pieces that end inside a URL, a header's name
    # or value, a body.
    from uringio.http import Response, Router
    router = Router()
    kept = []

    @router.route("/r", methods=("GET", "HEAD", "POST"))
    def record(request):
        kept.append(request)
        return Response(b"ok")

    requests = (b"GET /r HTTP/1.1\r\nHOST: a\r\nX-Trace-Id: 7\r\n\r\n"
                b"POST /r HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello"
                b"POST /r HTTP/1.1\r\nhost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                b"GET /r HTTP/1.1\r\nHost: d\r\nConnection: keep-alive\r\n\r\n"
                b"GET /r HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n")
    responses = exchange(router, requests, piece)
    assert [body for _, body in responses] == [b"ok"] * 5
    assert [(r.method, r.url, r.body, r.keep_alive, r.version) for r in kept] == [
        ("GET", b"/r", b"", True, "1.1"), ("POST", b"/r", b"hello", True, "1.1"),
        ("POST", b"/r", b"abcde", True, "1.1"), ("GET", b"/r", b"", True, "1.1"),
        ("GET", b"/r", b"", True, "1.0")]
    assert kept[0].headers == {b"host": b"a", b"x-trace-id": b"7"}
    assert kept[1].headers == {b"host": b"b", b"content-length": b"5"}
    assert kept[2].headers == {b"host": b"c", b"transfer-encoding": b"chunked"}
    assert kept[3].headers == {b"host": b"d", b"connection": b"keep-alive"}
    assert kept[4].headers == {b"connection": b"Keep-Alive"}
    assert responses[4][0].startswith(b"HTTP/1.0 200 OK\r\n")
    assert responses[4][0].endswith(b"\r\nConnection: keep-alive")


def test_a_request_not_kept_is_not_seen_changed_by_the_next():
    # The handler reads the request during its call only; what it saw of
    # each one must be that request's own.
    from uringio.http import Response, Router
    router = Router()

    @router.route("/a", methods=("POST",))
    def describe(request):
        return Response(b"%s %s" % (request.headers.get(b"x-n", b"-"), request.body))

    post = b"POST /a HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
    pipelined = (post % (b"X-N: 1\r\n", 3, b"one") + post % (b"", 0, b"")
                 + post % (b"X-N: 3\r\n", 5, b"three"))
    bodies = [body for _, body in exchange(router, pipelined)]
    assert bodies == [b"1 one", b"- ", b"3 three"]


def _raises(request):
    raise ValueError("handler bug")


def _returns_text(request):
    return "not a Response"


@pytest.mark.parametrize("handler, error", [(_raises, ValueError), (_returns_text, TypeError)])
def test_a_failing_handler_gets_500_and_the_next_request_is_answered(caplog, handler, error):
    # A handler that raises, or returns no Response: 500, logged with the
    # exception, and the connection goes on.
    from uringio.http import Response, Router
    router = Router()
    router.route("/bad")(handler)

    @router.route("/ok")
    def ok(request):
        return Response(b"fine")

    get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
    with caplog.at_level("ERROR", logger="uringio"):
        responses = exchange(router, get % b"/bad" + get % b"/ok")
    assert [head.split(b"\r\n")[0] for head, _ in responses] == [
        b"HTTP/1.1 500 Internal Server Error", b"HTTP/1.1 200 OK"]
    assert [body for _, body in responses] == [b"internal server error\n", b"fine"]
    failed, = [r for r in caplog.records if "raised" in r.getMessage()]
    assert "GET /bad" in failed.getMessage()
    assert failed.exc_info[0] is error   # with its traceback, for the log


def test_a_fixed_response_follows_its_status_and_the_date():
    # The whole response of a fixed page is kept between requests: a new
    # status or a new Date second must show in the next one.
    from uringio import http
    router = http.Router()
    shared = http.Response(b"page")

    @router.route("/")
    def fixed(request):
        return shared

    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    saved = http._date[:]   # read in place by the C path: set its items
    try:
        http._date[:] = [float("inf"), b"Date: first\r\n"]
        heads = [head for head, _ in exchange(router, get * 2)]
        assert all(h.startswith(b"HTTP/1.1 200 OK\r\n") and b"Date: first\r\n" in h for h in heads)
        shared.status = 404
        (head, body), = exchange(router, get)
        assert head.startswith(b"HTTP/1.1 404 Not Found\r\n") and body == b"page"
        http._date[1] = b"Date: second\r\n"
        (head, body), = exchange(router, get)
        assert b"Date: second\r\n" in head and b"Date: first" not in head and body == b"page"
    finally:
        http._date[:] = saved


def test_a_protocol_and_its_parser_are_freed_after_use():
    # HTTPProtocol and what it holds (the router, its Request kept for
    # reuse, the parts of a head) must be collectable once dropped.
    import gc
    import weakref

    from uringio.http import HTTPProtocol, default_router
    protocol = HTTPProtocol(default_router())
    protocol.connection_made(FakeConn())
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    gone = weakref.ref(protocol)
    del protocol
    gc.collect()
    assert gone() is None


def test_nothing_is_written_after_a_response_that_closes():
    # As a Connection does, this one refuses writes once closed; the
    # request after the closing one must not be answered, nor fail.
    from uringio.http import HTTPProtocol, default_router

    class ClosingConn(FakeConn):
        closed = False

        def close(self):
            self.closed = True

        def write(self, data):
            if self.closed:
                raise RuntimeError("write() after close()")
            super().write(data)

    conn = ClosingConn()
    protocol = HTTPProtocol(default_router())
    protocol.connection_made(conn)
    get = b"GET / HTTP/1.1\r\nHost: x\r\n%s\r\n"
    protocol.data_received(get % b"Connection: close\r\n" + get % b"" + get % b"")
    protocol.data_received(get % b"")
    assert conn.closed and conn.data.count(b"HTTP/1.1 200 OK") == 1


def test_the_in_process_benchmark_runs():
    # docs/http.md quotes it; a short run must get both protocols' requests
    # through (it exits non-zero when one writes nothing).
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "http_inprocess.py"),
                          "--chunks", "20", "--repeats", "1"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert re.search(r"serve http .* ns/request +\(147 bytes a response\)", out), out
    assert re.search(r"minimal httptools protocol .* ns/request +\(147 bytes a response\)",
                     out), out
    assert "serve http / minimal:" in out


DELETED_MEMBERS = """
import sys
sys.path.insert(0, "tests")
from test_http import FakeConn
from uringio.http import HTTPProtocol, default_router
for member in ("_waiting_since", "_send"):
    protocol = HTTPProtocol(default_router())
    protocol.connection_made(FakeConn())
    delattr(protocol, member)
    try:
        protocol.data_received(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        print(member, "answered")
    except RuntimeError as exc:
        print(member, "refused:", exc)
"""


def test_deleting_the_c_members_python_may_set_never_crashes():
    # HttpCore's writable members can be deleted (NULL in C): the per-request
    # path must answer or refuse, never read the NULL. In a fresh interpreter,
    # so that a crash shows as a failed test.
    import subprocess
    import sys

    from conftest import REPO
    proc = subprocess.run([sys.executable, "-c", DELETED_MEMBERS], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.splitlines() == ["_waiting_since answered",
                                        "_send refused: HTTPProtocol._send is not set"], proc.stdout
