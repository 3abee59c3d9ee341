"""The ASGI server (``python -m uringio serve asgi``) with real, unmodified
frameworks on both backends, answering curl and httpx; and what it does
with hostile input."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

import h11
import httpx
import pytest

from conftest import REPO, raw, recv_until_eof, start_server, status_of, stop_server, wait_for

APPS = os.path.join(REPO, "tests", "apps")


def _serve(backend: str, target: str, *args: str, env: dict | None = None):
    if env:
        os.environ.update(env)
    try:
        return start_server(["-m", "uringio", "serve", "asgi", target, "--app-dir", APPS,
                             "--port", "0", *args], backend)
    finally:
        for key in env or ():
            del os.environ[key]


@pytest.fixture
def served_file(tmp_path):
    path = tmp_path / "served.bin"
    path.write_bytes(os.urandom(300_000))
    return path


@pytest.fixture
def fastapi_server(backend, served_file):
    proc, port = _serve(backend, "fastapi_app:app", env={"ASGI_TEST_FILE": str(served_file)})
    yield port
    assert stop_server(proc) == 0


def test_fastapi_app(fastapi_server, served_file):
    base = f"http://127.0.0.1:{fastapi_server}"
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/").text == "Hello, World!"
        assert client.get("/items/42", params={"q": "x y"}).json() == {"item_id": 42, "q": "x y"}
        assert client.get("/items/nope").status_code == 422   # FastAPI's validation
        item = {"name": "ring", "price": 2.5, "tags": ["a", "b"]}
        assert client.post("/items", json=item).json() == {"name": "ring", "total": 5.0,
                                                            "tags": ["a", "b"]}
        blob = os.urandom(200_000)
        answer = client.post("/upload", data={"title": "t"},
                             files={"file": ("blob.bin", blob, "application/octet-stream")})
        assert answer.json() == {"title": "t", "filename": "blob.bin", "size": len(blob),
                                 "sum": sum(blob) % 65536}
        streamed = client.get("/stream")
        assert streamed.headers.get("transfer-encoding") == "chunked"
        assert streamed.text == "".join(f"{i:04d}\n" for i in range(100))
        got = client.get("/file")
        assert got.content == served_file.read_bytes()
        assert int(got.headers["content-length"]) == len(got.content)
        assert client.get("/background", params={"tag": "t1"}).json() == {"queued": "t1"}
        assert wait_for(lambda: "t1" in client.get("/done").json()["done"]), \
            "the background task never ran"
        assert client.get("/sync", params={"n": 3}).json() == {"n": 3, "in_a_thread": True}
        for seconds in (0.01, 0):
            assert client.get("/deadline", params={"seconds": seconds}).json() == {
                "cancelled": True}
        state = client.get("/state").json()
        assert state["started_by"] == state["pid"]   # lifespan state reached the request
    # HEAD, then GET on the same connection: the HEAD's answer is its head
    # alone (whatever body the app gave it is not sent), so the very next
    # bytes are the GET's answer. (httpx reads no body after a HEAD: it
    # would not see one that was sent.)
    out = raw(fastapi_server, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    # FastAPI answers HEAD on a GET route with 405 and its JSON body's length.
    assert status_of(head) in (200, 405), head
    assert b"\r\ncontent-length: " in head.lower(), head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), out
    assert rest.endswith(b"\r\n\r\nHello, World!") and rest.count(b"HTTP/1.1") == 1, out
    out = subprocess.run(["curl", "-s", "-i", f"{base}/items/7?q=curl"], capture_output=True,
                         timeout=10, check=True).stdout
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b'{"item_id":7,"q":"curl"}')


def test_starlette_app(backend, served_file):
    from websockets.sync.client import connect

    proc, port = _serve(backend, "starlette_app:app", env={"ASGI_TEST_FILE": str(served_file)})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/").text == "Hello, World!"
            hello = client.get("/hello/ring").json()
            assert hello == {"hello": "ring", "loop": "uringio.aio.loop", "backend": backend}
            assert client.get("/stream").text == "".join(f"{i:04d}\n" for i in range(100))
            assert client.post("/double", params={"scale": 3},
                               json={"numbers": [1, 2, 3]}).json() == {"doubled": [2, 4, 6],
                                                                        "scale": 3}
            blob = os.urandom(150_000)
            assert client.post("/upload", data={"title": "t"},
                               files={"file": ("b.bin", blob)}).json() == {"title": "t",
                                                                            "size": len(blob)}
            assert client.get("/file").content == served_file.read_bytes()
            assert client.get("/background", params={"tag": "s1"}).json() == {"queued": "s1"}
            assert wait_for(lambda: "s1" in client.get("/done").json()["done"]), \
                "the background task never ran"
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("starlette")
            assert ws.recv() == "starlette"
    finally:
        assert stop_server(proc) == 0


def test_an_app_that_raises_gets_a_500_and_the_connection_goes_on(fastapi_server):
    with httpx.Client(base_url=f"http://127.0.0.1:{fastapi_server}", timeout=10) as client:
        assert client.get("/boom").status_code == 500
        assert client.get("/").text == "Hello, World!"


def test_lifespan_runs_once_per_worker(backend, tmp_path, served_file):
    log_path = tmp_path / "lifespan.log"
    proc, port = _serve(backend, "fastapi_app:app", "--model", "multi", "--workers", "2",
                        env={"LIFESPAN_LOG": str(log_path), "ASGI_TEST_FILE": str(served_file)})
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "Hello, World!"
    finally:
        assert stop_server(proc) == 0
    events = log_path.read_text().split("\n")[:-1]
    starts = sorted(e.split()[1] for e in events if e.startswith("startup"))
    stops = sorted(e.split()[1] for e in events if e.startswith("shutdown"))
    assert len(starts) == 2 and len(set(starts)) == 2   # two workers, once each
    assert stops == starts


def _refused(port: int) -> bool:
    """Whether the server at ``port`` no longer accepts connections: the
    connect is refused, or reset -- a connection the kernel had queued for
    the listener when the server closed it is reset, and that is a refusal
    too (seen once in CI, on a loaded machine)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


def test_sigterm_lets_requests_in_flight_finish(backend, served_file, tmp_path):
    # The request is held by the app until the test releases it, after the
    # server has taken the SIGTERM (it stopped accepting): in flight through
    # the shutdown, whatever this machine's speed.
    release = tmp_path / "release"
    proc, port = _serve(backend, "fastapi_app:app", "--drain-timeout", "60",
                        env={"ASGI_TEST_FILE": str(served_file)})
    result = {}
    raised: list[BaseException] = []

    def held_request():
        try:
            result["r"] = httpx.get(f"http://127.0.0.1:{port}/hold",
                                    params={"release": str(release)}, timeout=60)
        except BaseException as exc:   # re-raised in the test's thread
            raised.append(exc)

    thread = threading.Thread(target=held_request)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert wait_for(lambda: client.get("/held").json()["held"] == [str(release)])
        proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: _refused(port)), "the server went on accepting after SIGTERM"
        assert proc.poll() is None, "the server exited with a request in flight"
        release.touch()
        thread.join(60)
        assert not thread.is_alive(), "the held request never finished"
        if raised:
            raise raised[0]
        assert result["r"].status_code == 200
        assert result["r"].json() == {"released": str(release)}
        assert proc.wait(30) == 0   # it exits by itself once drained
    finally:
        release.touch()
        thread.join(60)
        stop_server(proc)


# -- HTTP details and hostile input -------------------------------------------------


def test_pipelined_requests_are_answered_in_order(fastapi_server):
    requests = b"".join(b"GET /items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
    out = raw(fastapi_server, requests + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
              timeout=10)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in out.split(b"HTTP/1.1 ")[1:]]
    assert bodies[:10] == [b'{"item_id":%d,"q":null}' % i for i in range(10)]
    assert bodies[10] == b"Hello, World!"


def test_hostile_input_gets_the_status_serve_http_gives(fastapi_server):
    port = fastapi_server
    bystander = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    assert bystander.get("/").status_code == 200
    assert status_of(raw(port, b"NOT HTTP AT ALL\r\n\r\n", timeout=10)) == 400
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    assert status_of(raw(port, huge, timeout=10)) == 431
    # 10 GB announced, nothing sent: refused at once, without reading a byte.
    ten_gb = b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n"
    assert status_of(raw(port, ten_gb, timeout=10)) == 413
    assert bystander.get("/").status_code == 200   # nobody else was disturbed
    bystander.close()


def test_expect_100_continue(fastapi_server):
    with socket.create_connection(("127.0.0.1", fastapi_server), timeout=10) as s:
        body = b'{"name": "x", "price": 1}'
        s.sendall(b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        s.shutdown(socket.SHUT_WR)
        out = recv_until_eof(s)
    assert status_of(out) == 200 and out.endswith(b'{"name":"x","total":2.0,"tags":[]}')


@pytest.mark.parametrize("target", [b"/echo-head", b"/start-then-read"])
def test_a_chunked_body_past_the_limit_is_refused_while_its_app_waits(backend, target):
    # The body's size is known only as it arrives: once past --max-body,
    # the app waiting for it hears the client is gone, and the client gets
    # a 413 -- or, its response begun, a reset -- not a connection that
    # hangs. Another connection is served meanwhile.
    proc, port = _serve(backend, "asgi_raw:app", "--max-body", "100")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"50\r\n%s\r\n" % (target, b"a" * 80))
            s.sendall(b"50\r\n%s\r\n" % (b"b" * 80))
            if target == b"/echo-head":
                got = recv_until_eof(s)
                assert status_of(got) == 413 and got.endswith(b"413 Request Entity Too Large\n")
            else:
                with pytest.raises(ConnectionResetError):
                    got = b""
                    while chunk := s.recv(65536):
                        got += chunk
                assert not got.endswith(b"ok"), got
        other = raw(port, b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(other) == 200
    finally:
        assert stop_server(proc) == 0


def test_slowloris_gets_408_and_others_are_served(backend, served_file):
    proc, port = _serve(backend, "fastapi_app:app", "--header-timeout", "0.5",
                        env={"ASGI_TEST_FILE": str(served_file)})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")   # and never the end of the head
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
            assert status_of(recv_until_eof(slow)) == 408
    finally:
        assert stop_server(proc) == 0


# -- WebSockets ------------------------------------------------------------------------


def test_websocket_echo_with_the_websockets_client(fastapi_server):
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{fastapi_server}/ws", max_size=None) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ws.send("hello, ring")
        assert ws.recv() == "hello, ring"
        ws.send(b"\x00\x01binary")
        assert ws.recv() == b"\x00\x01binary"
        ws.send(["frag", "ment", "ed"])   # one message in three frames
        assert ws.recv() == "fragmented"
        big = os.urandom(3 << 20)
        ws.send(big)
        assert ws.recv() == big
        ws.ping(b"p").wait(5)   # answered with a pong
        ws.close(1000)
    assert ws.close_code == 1000


def test_websocket_refused_handshake_is_403(fastapi_server):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{fastapi_server}/ws-refused")
    assert refused.value.response.status_code == 403


def test_websocket_oversized_message_closes_with_1009(backend, served_file):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    proc, port = _serve(backend, "fastapi_app:app", "--ws-max-size", "100000",
                        env={"ASGI_TEST_FILE": str(served_file)})
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
            ws.send(b"x" * 1000)
            assert ws.recv() == b"x" * 1000
            ws.send(b"y" * 200_000)
            with pytest.raises(ConnectionClosed):
                ws.recv()
        assert ws.close_code == 1009
    finally:
        assert stop_server(proc) == 0


def _raw_websocket(port: int) -> socket.socket:
    # A handshake by hand, so that the frames after it can be wrong on purpose.
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock


def _close_code(sock: socket.socket) -> int:
    frames = recv_until_eof(sock)
    assert frames[0] == 0x88, frames[:4]   # FIN + close
    return int.from_bytes(frames[2:4], "big")


@pytest.mark.parametrize("frame, code", [
    (b"\x81\x05hello", 1002),                          # a client frame not masked
    (b"\x81\x82\x00\x00\x00\x00\xc3\x28", 1007),      # text that is not UTF-8
    (b"\x83\x80\x00\x00\x00\x00", 1002),              # a reserved opcode
])
def test_websocket_bad_frames_get_their_close_code(fastapi_server, frame, code):
    with _raw_websocket(fastapi_server) as sock:
        sock.sendall(frame)
        assert _close_code(sock) == code
    with httpx.Client(base_url=f"http://127.0.0.1:{fastapi_server}", timeout=10) as client:
        assert client.get("/").status_code == 200   # the server is none the worse


def test_receive_after_the_body_waits_and_send_to_a_gone_client_raises(backend):
    proc, port = _serve(backend, "asgi_raw:app")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.post("/after-body", content=b"b" * 100_000).text == "ok"
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
                assert len(s.recv(65536)) > 0   # it streams; then we leave
            assert wait_for(lambda: "stopped" in client.get("/events").text), \
                "the app never learned the client left"
            events = client.get("/events").text
        assert "('after', 'http.disconnect')" in events and "('waited', True)" in events
    finally:
        assert stop_server(proc) == 0


def test_pathsend_files_small_and_large_in_order(backend, tmp_path):
    # Read and sent with the head (small, on uring) or spliced/sendfile'd
    # (large): either way byte-exact, and pipelined responses stay in order.
    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    small.write_bytes(os.urandom(1000))
    large.write_bytes(os.urandom(2_000_000))
    proc, port = _serve(backend, "asgi_raw:app")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for path in (small, large, small):
                got = client.get(f"/pathsend?{path}")
                assert got.content == path.read_bytes()
        requests = b"".join(b"GET /pathsend?%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(p).encode()
                            for p in (large, small, large))
        out = raw(port, requests + b"GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  timeout=10)
        for path in (large, small, large):
            head, _, out = out.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert out[:length] == path.read_bytes()
            out = out[length:]
        assert out.startswith(b"HTTP/1.1 200 OK")
    finally:
        assert stop_server(proc) == 0


def test_bodies_large_and_small_arrive_whole_with_a_length_or_chunked(backend):
    # A body of BODY_APART bytes or more goes out apart from its head (the
    # uring send stream then sends it from the object): whatever the mix,
    # h11 reads the bytes the app sent, in order, on one connection.
    from uringio.asgi._asgicore import BODY_APART
    sizes = [[1], [BODY_APART - 1], [BODY_APART], [3 << 20],
             [10, BODY_APART, 5, 1 << 20, BODY_APART - 1, 7]]
    proc, port = _serve(backend, "asgi_raw:app")
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        client = h11.Connection(h11.CLIENT)
        for shape in ("length", "chunked"):
            for parts in sizes:
                target = f"/bodies?{shape},{','.join(map(str, parts))}"
                sock.sendall(client.send(h11.Request(method="GET", target=target,
                                                     headers=[("Host", "x")])))
                sock.sendall(client.send(h11.EndOfMessage()))
                body, event = bytearray(), None
                while not isinstance(event, h11.EndOfMessage):
                    event = client.next_event()
                    if event is h11.NEED_DATA:
                        client.receive_data(sock.recv(1 << 20))
                    elif isinstance(event, h11.Response):
                        chunked = (b"transfer-encoding", b"chunked") in event.headers
                        assert chunked == (shape == "chunked" and len(parts) > 1), target
                    elif isinstance(event, h11.Data):
                        body += event.data
                assert body == b"".join(bytes([65 + i % 26]) * n
                                        for i, n in enumerate(parts)), target
                client.start_next_cycle()
        sock.close()
    finally:
        assert stop_server(proc) == 0


@pytest.mark.parametrize("pace", ["", "slow"])
def test_request_bodies_reach_the_app_whole_and_in_order(backend, pace):
    # Bodies with a length and chunked, sent at once or in pieces with
    # pauses, two pipelined back to back: the app (reading at once, or
    # slowly so the body piles up) gets every byte once, in order, nothing
    # of the next request's, and no message after the one saying the body
    # is over.
    import hashlib
    import random
    rng = random.Random(7)
    bodies = [rng.randbytes(n) for n in (1, 1000, 70_000, 3 << 20)]
    proc, port = _serve(backend, "asgi_raw:app")
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        pending = b""

        def request(body: bytes, chunked: bool) -> bytes:
            head = f"POST /digest?{pace} HTTP/1.1\r\nHost: x\r\n".encode()
            if not chunked:
                return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
            pieces = [body[at:at + 100_000] for at in range(0, len(body), 100_000)]
            return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
                b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"

        def answer() -> bytes:
            nonlocal pending
            while b"\r\n\r\n" not in pending:
                pending += sock.recv(1 << 16) or pytest.fail("closed")
            head, _, pending = pending.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            while len(pending) < length:
                pending += sock.recv(1 << 16) or pytest.fail("closed")
            text, pending = pending[:length], pending[length:]
            return text

        for chunked in (False, True):
            for body in bodies:
                wire = request(body, chunked)
                if len(body) > 1000:   # in pieces, with pauses between
                    for at in range(0, len(wire), 300_000):
                        sock.sendall(wire[at:at + 300_000])
                        time.sleep(0.005)
                else:
                    sock.sendall(wire)
                digest, messages, after_last = answer().split()
                assert digest.decode() == hashlib.sha256(body).hexdigest(), (chunked, len(body))
                assert after_last == b"0" and int(messages) >= 1
            # Two requests in one write: each body is its own.
            first, second = bodies[2], bodies[1]
            sock.sendall(request(first, chunked) + request(second, chunked))
            for body in (first, second):
                assert answer().split()[0].decode() == hashlib.sha256(body).hexdigest()
        sock.close()
    finally:
        assert stop_server(proc) == 0


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(backend, served_file):
    proc, port = _serve(backend, "fastapi_app:app", "--timeout-keep-alive", "0.5",
                        env={"ASGI_TEST_FILE": str(served_file)})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            # The server's idle clock starts once it has answered, after this.
            start = time.monotonic()
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Hello, World!"):
                answer += s.recv(4096)
            assert s.recv(100) == b""   # closed by the server (in 10 s, or recv raises)
            assert time.monotonic() - start >= 0.5   # not before its timeout
    finally:
        assert stop_server(proc) == 0


def test_the_scope_of_origin_form_requests(backend):
    proc, port = _serve(backend, "asgi_raw:app", "--root-path", "/api")
    try:
        got = raw(port, b"GET /a%20b/scope?x=1&y=%20 HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
        assert status_of(got) == 200
        assert got.split(b"\r\n\r\n", 1)[1] == repr(
            ["1.1", "GET", "/api", "/api/a b/scope", b"/a%20b/scope", b"x=1&y=%20",
             "http"]).encode()
        got = raw(port, b"GET /scope HTTP/1.0\r\n\r\n")
        assert got.startswith(b"HTTP/1.0 200 OK\r\n") and b"connection: close" in got
        assert got.endswith(repr(["1.0", "GET", "/api", "/api/scope", b"/scope", b"",
                                  "http"]).encode())
        head = raw(port, b"HEAD /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(head) == 200 and head.endswith(b"\r\n\r\n")
        got = raw(port, b"GET /generated-headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"\r\nx-made: lazily\r\n" in got and got.endswith(b"\r\n\r\ngenerated")
    finally:
        assert stop_server(proc) == 0


def test_each_request_gets_a_scope_of_its_own(backend):
    # Two requests on one connection, the first changing its scope (its
    # dicts, nested ones too): the second's is as the first one's was.
    proc, port = _serve(backend, "asgi_raw:app")
    try:
        request = b"GET /scope?whole HTTP/1.1\r\nHost: x\r\n\r\n"
        got = raw(port, request + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        bodies = [answer.split(b"\r\n\r\n", 1)[1] for answer in got.split(b"HTTP/1.1 200 OK")[1:]]
        assert len(bodies) == 2 and bodies[0] == bodies[1], got
        assert bodies[0] == repr(
            ["1.1", "GET", "", "/scope", b"/scope", b"whole", "http",
             ["asgi", "client", "extensions", "headers", "http_version", "method", "path",
              "query_string", "raw_path", "root_path", "scheme", "server", "state", "type"],
             {"http.response.pathsend": {}}, {}]).encode()
    finally:
        assert stop_server(proc) == 0


@contextlib.contextmanager
def _connection(backend: str, target: str):
    """A server of the app ``target``, and one connection to it."""
    proc, port = _serve(backend, target)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            yield sock
    finally:
        assert stop_server(proc) == 0


def _get(sock: socket.socket, target: bytes) -> bytes:
    """GET ``target`` on a kept-alive connection: the response's body."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        assert chunk, got
        got += chunk
    head, body = got.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, got + body
        body += chunk
    return body


def test_a_scope_changed_or_kept_is_not_the_next_requests(backend):
    # The last request's scope may serve the next one only as new: what an
    # app changed in it (every value, nested dicts too) or kept of it (its
    # state and extensions, changed after its end) is not the next one's.
    with _connection(backend, "asgi_raw:app") as s:
        first = _get(s, b"/scope-report")
        assert b"('extensions', {'http.response.pathsend': {}})" in first, first
        for target in (b"/scope-overwrite", b"/scope-report", b"/scope-keep", b"/scope-report",
                       b"/scope-report"):
            found = _get(s, target)
            assert found == first.replace(b"/scope-report", target), (target, found)


def test_a_response_is_in_its_requests_version_whatever_the_scope_says(backend):
    with _connection(backend, "asgi_raw:app") as s:
        for target in (b"/version-rewrite", b"/version-rewrite?slow", b"/version-rewrite"):
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
            got = b""
            while not got.endswith(b"rewritten"):
                chunk = s.recv(65536)
                assert chunk, got   # (kept alive: the next request is answered)
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection" not in got, got


@pytest.mark.parametrize("target", ["asgi_raw:app", "asgi_raw:future_app"])
def test_an_app_runs_in_one_task_with_its_own_context(backend, target):
    # Two requests on one connection, each answered at once (no wait) and
    # after a wait: the task is the same object before and after, and a
    # context variable the first request set is not the second's.
    with _connection(backend, target) as s:
        for query in (b"", b"wait", b"", b"wait"):
            assert _get(s, b"/task?" + query) == b"(True, 'unset')", query


def test_a_task_left_with_state_is_not_the_next_requests(backend):
    # Each request on one connection reads its task, then leaves something
    # on it: kept in a list, named, cancelled, weakly referenced (as anyio
    # keys its cancel scopes' state). The server may run a request in the
    # last one's task object only when nothing of that kind happened to it:
    # each next request finds a task with no name, no cancel, pending, not
    # one kept or weakly referenced -- and a task kept was ended.
    with _connection(backend, "asgi_raw:app") as s:
        for action in (b"", b"", b"keep", b"", b"name", b"", b"cancel", b"", b"weak", b"", b""):
            found = _get(s, b"/task-state?" + action)
            assert found == b"(None, 0, False, False, True)", (action, found)


def test_receive_and_send_kept_by_an_app_stay_their_requests(backend):
    with _connection(backend, "asgi_raw:app") as s:
        _get(s, b"/scope")
        assert _get(s, b"/keep-methods") == b"kept"
        assert _get(s, b"/kept-methods") == b"(False, False, 'refused', 'http.disconnect')"


@pytest.mark.parametrize("query", [b"", b"wait"])
def test_an_app_that_fails_at_once_or_later_is_answered_or_reset(backend, query):
    proc, port = _serve(backend, "asgi_raw:app")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /raise?%s HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n" % query)
            got = b""
            while b"/scope" not in got:
                chunk = s.recv(65536)
                assert chunk, got
                got += chunk
        assert status_of(got) == 500 and got.count(b"HTTP/1.1 200 OK") == 1
        # A response begun and not finished: the connection is reset (what
        # arrived of it, if anything, is short of its Content-Length).
        got = b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /half?%s HTTP/1.1\r\nHost: x\r\n\r\n" % query)
            with pytest.raises(ConnectionResetError):
                while chunk := s.recv(65536):
                    got += chunk
        assert not got.endswith(b"\r\n\r\n1234567890")
    finally:
        assert stop_server(proc) == 0


class _Sink:
    """The transport an in-process HttpProtocol writes to: it counts."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data) -> None:
        self.written += len(data)

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1)

    def close(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False   # a refusal then closes at once, as on a TLS transport

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _in_process(backend: str, feed, protocol=None) -> bytes:
    """What an HttpProtocol (or ``protocol``, a subclass) for asgi_raw.app
    writes when ``feed(proto, loop)`` (a coroutine function) feeds it, in
    process."""
    import asyncio
    import sys

    import uringio
    from uringio.asgi.http import HttpProtocol, ServerState
    sys.path.insert(0, APPS)
    try:
        import asgi_raw
    finally:
        sys.path.remove(APPS)
    out = bytearray()

    class Recorder(_Sink):
        def write(self, data) -> None:
            out.extend(data)

    async def main() -> None:
        proto = (protocol or HttpProtocol)(ServerState(asgi_raw.app))
        proto.connection_made(Recorder())
        await feed(proto, asyncio.get_running_loop())

    uringio.run(main(), backend=backend)
    return bytes(out)


async def _turns(loop, count: int = 3) -> None:
    import asyncio
    for _ in range(count):
        await asyncio.sleep(0)


def test_a_head_cut_anywhere_parses_as_a_whole_one(backend):
    # Pipelined requests fed in pieces of 1, 2, 3, 7 bytes and whole: a
    # piece of the URL, of a header's name or value, or of a body ends in
    # each place, and the app sees the same requests -- an empty header
    # value as one, a body whole.
    requests = (b"GET /echo-head?a=1&b=two HTTP/1.1\r\nHost: example\r\n"
                b"X-Empty:\r\nX-Long-Header-Name: a value, with spaces\r\n\r\n"
                b"POST /echo-head HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
                b"POST /echo-head HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    def fed_in(size: int) -> bytes:
        async def feed(proto, loop) -> None:
            for at in range(0, len(requests), size):
                loop.call_soon(proto.data_received, requests[at:at + size])
                await _turns(loop)
            await _turns(loop, 10)
        return _in_process(backend, feed)

    whole = fed_in(len(requests))
    assert whole.count(b"HTTP/1.1 200 OK") == 3, whole
    assert (b"('GET', '/echo-head', b'a=1&b=two', [(b'host', b'example'), (b'x-empty', b''), "
            b"(b'x-long-header-name', b'a value, with spaces')], b'')") in whole
    assert whole.count(b"b'hello world')") == 2, whole
    def undated(out: bytes) -> bytes:   # the Date line may turn a second between two runs
        return re.sub(rb"(?i)\r\ndate: [^\r]*", b"", out)

    for size in (1, 2, 3, 7):
        assert undated(fed_in(size)) == undated(whole), size


def test_a_head_past_its_limit_is_refused_before_it_ends(backend):
    # A header value that never ends, fed a KiB at a time: 431 once the
    # head passes the 64 KiB limit, not when (never) the header is done.
    pieces = []

    async def feed(proto, loop) -> None:
        loop.call_soon(proto.data_received, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for count in range(1, 200):
            loop.call_soon(proto.data_received, b"a" * 1024)
            await _turns(loop)
            if proto.closing:
                pieces.append(count)
                return

    out = _in_process(backend, feed)
    assert out.startswith(b"HTTP/1.1 431 "), out[:100]
    assert pieces and pieces[0] <= 65, pieces


def test_a_url_past_the_head_limit_is_414_however_it_arrives(backend):
    # A URL that alone passes the 64 KiB head limit is a 414 (a head too
    # large for other reasons, 431), fed whole or a KiB at a time: the
    # URL's length counts every piece, not only those of the last chunk.
    def refused(piece: int) -> bytes:
        async def feed(proto, loop) -> None:
            loop.call_soon(proto.data_received, b"GET /")
            for _ in range(200):
                loop.call_soon(proto.data_received, b"a" * piece)
                await _turns(loop)
                if proto.closing:
                    return
        return _in_process(backend, feed)

    for piece in (100_000, 1024):
        out = refused(piece)
        assert out.startswith(b"HTTP/1.1 414 "), (piece, out[:100])


def test_a_callback_of_the_parser_that_fails_is_a_logged_500(backend, caplog):
    # What the server's own code raises while the parser calls it back (here
    # on_body) is the server's fault, not the request's: a 500, logged.
    from uringio.asgi.http import HttpProtocol

    class Failing(HttpProtocol):
        def on_body(self, body: bytes) -> None:
            raise RuntimeError("on_body failed, as asked")

    async def feed(proto, loop) -> None:
        loop.call_soon(proto.data_received, b"POST /echo-head HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Length: 5\r\n\r\nhello")
        await _turns(loop, 10)

    out = _in_process(backend, feed, Failing)
    assert out.startswith(b"HTTP/1.1 500 ") and out.count(b"HTTP/1.1") == 1, out
    assert any(record.exc_info and "on_body failed" in str(record.exc_info[1])
               for record in caplog.records), caplog.records


def test_the_request_path_keeps_nothing_per_request(backend):
    # Requests fed to the protocol in process, each from a plain callback
    # as the loop delivers them, answered at once, after a failure, and
    # after a wait: once warm, more requests leave no more objects alive
    # (a reference the C path kept would keep a request, its scope and
    # its task per request).
    import asyncio
    import collections
    import gc
    import logging
    import sys

    import uringio
    from uringio.asgi.http import HttpProtocol, ServerState

    sys.path.insert(0, APPS)
    try:
        import asgi_raw
    finally:
        sys.path.remove(APPS)

    async def feed(proto, sink, request: bytes, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            written = sink.written
            loop.call_soon(proto.data_received, request)
            for _ in range(1000):   # answered within the next turns, or after the wait
                await asyncio.sleep(0)
                if sink.written != written:
                    break
                await asyncio.sleep(0.001)
            assert sink.written != written, request
            # A request that had to wait is over when its task is: until
            # then its objects are alive (a dozen), and a snapshot taken
            # meanwhile would count them.
            for _ in range(1000):
                if not proto.server.tasks:
                    break
                await asyncio.sleep(0.001)
            assert not proto.server.tasks, request

    def alive() -> collections.Counter:
        gc.collect()
        return collections.Counter(type(o).__name__ for o in gc.get_objects())

    async def main() -> None:
        for path, count in ((b"/scope", 2000), (b"/raise", 2000), (b"/task?wait", 100)):
            proto = HttpProtocol(ServerState(asgi_raw.app))
            sink = _Sink()
            proto.connection_made(sink)
            request = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path
            await feed(proto, sink, request, count)   # (warm: caches filled once)
            before = alive()
            await feed(proto, sink, request, count)
            grown = alive() - before
            # A reference kept per request would grow by `count` at least.
            assert sum(grown.values()) < count // 10, (path, grown.most_common(5))
            assert not grown["RequestCycle"] and not grown["EagerTask"], (path, grown)

    logging.disable(logging.CRITICAL)   # (the failing route logs each failure)
    try:
        uringio.run(main(), backend=backend)
    finally:
        logging.disable(logging.NOTSET)
