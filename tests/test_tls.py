"""``serve asgi`` and ``serve http`` over TLS, with real clients: curl and
Python's ``ssl`` (HTTPS, ALPN http/1.1, keep-alive, pipelining), a client
certificate required and refused, a WebSocket over TLS (the
``websockets`` client), ``serve http`` in every server model with static
files through the record layer. The certificates are made for each run
with the openssl command. Both backends, each server stopped by its pid."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys

import pytest
import websockets

from conftest import REPO, recv_until_eof, start_server, stop_server

APPS = os.path.join(REPO, "tests", "apps")
TIMEOUT = 10.0


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 it signed, and a client
    certificate it signed; RSA-2048. The paths, by name."""
    d = tmp_path_factory.mktemp("pki")
    p = {name: str(d / f"{name}.pem") for name in
         ("ca", "ca_key", "server", "server_key", "client", "client_key")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca_key"],
            "-out", p["ca"], "-days", "2", "-subj", "/CN=uringio test CA")
    for who, san in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                     ("client", "extendedKeyUsage=clientAuth")):
        csr = str(d / f"{who}.csr")
        ext = d / f"{who}.ext"
        ext.write_text(san + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p[f"{who}_key"], "-out", csr,
                "-subj", f"/CN={who}")
        openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"],
                "-CAcreateserial", "-out", p[who], "-days", "2", "-extfile", str(ext))
    return p


def serve_tls(backend: str, pki, *options: str):
    return start_server(["-m", "uringio", "serve", "asgi", "operate_app:app", "--app-dir", APPS,
                         "--port", "0", "--ssl-certfile", pki["server"], "--ssl-keyfile",
                         pki["server_key"], *options], backend)


def client_context(pki, certificate: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    context.set_alpn_protocols(["http/1.1"])
    if certificate:
        context.load_cert_chain(pki["client"], pki["client_key"])
    return context


def read_response(tls: ssl.SSLSocket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = tls.recv(65536)
        assert chunk, body
        body += chunk
    return head, body


def test_https_with_curl(backend, pki):
    proc, port = serve_tls(backend, pki)
    try:
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", pki["ca"],
                              f"https://127.0.0.1:{port}/scope"], capture_output=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        scope = json.loads(out.stdout)
        assert scope["scheme"] == "https" and scope["client"][0] == "127.0.0.1"
        # Plain HTTP to the TLS port is not served as HTTP.
        plain = subprocess.run(["curl", "-sS", "--max-time", "10",
                                f"http://127.0.0.1:{port}/scope"], capture_output=True,
                               timeout=30)
        assert plain.returncode != 0 and b"scheme" not in plain.stdout
    finally:
        assert stop_server(proc) == 0


def test_python_ssl_client_keeps_the_connection_alive(backend, pki):
    proc, port = serve_tls(backend, pki)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
                client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            for i in range(20):   # keep-alive: twenty requests, one TLS session
                tls.sendall(f"GET /scope?{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head, body = read_response(tls)
                assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["scheme"] == "https"
            # A request that does not parse: its 400, then a clean end
            # (close_notify and FIN, the lingering close), not a reset.
            tls.sendall(b"NOT A REQUEST\r\n\r\n")
            assert read_response(tls)[0].startswith(b"HTTP/1.1 400")
            assert tls.recv(100) == b""
    finally:
        assert stop_server(proc) == 0


def test_a_required_client_certificate_is_checked(backend, pki):
    proc, port = serve_tls(backend, pki, "--ssl-ca-certs", pki["ca"], "--ssl-cert-reqs", "2")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
                client_context(pki, certificate=True).wrap_socket(
                    raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(tls)[0].startswith(b"HTTP/1.1 200")
        # Without one: the server refuses the handshake (TLS 1.3 says so at
        # the client's first read, TLS 1.2 during the handshake).
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
                    data = tls.recv(65536)
                    assert data == b"", data   # never an answer
                    raise ConnectionResetError("closed without an answer")
    finally:
        assert stop_server(proc) == 0


def test_websocket_over_tls(backend, pki):
    proc, port = serve_tls(backend, pki)

    async def talk():
        async with websockets.connect(f"wss://127.0.0.1:{port}/ws",
                                      ssl=client_context(pki)) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "wss"
            for text in ("one", "two" * 1000):
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == text

    try:
        asyncio.run(talk())
    finally:
        assert stop_server(proc) == 0


@pytest.mark.parametrize("options, message", [
    (["--ssl-certfile", "/no/such.pem"], "uringio: error: cannot use --ssl-certfile "
                                         "/no/such.pem: No such file or directory"),
    (["--ssl-ca-certs", "/x.pem"], "python -m uringio serve: error: the --ssl-* options go "
                                   "with --ssl-certfile"),
])
def test_a_tls_option_that_cannot_work_is_one_line(options, message):
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi", "operate_app:app",
                           "--app-dir", APPS, "--port", "0", *options], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.strip() == message, proc.stderr


def test_gunicorn_serves_https_with_uringios_worker(backend, pki):
    import shutil
    import time

    tool = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([tool, "-k", "uringio.asgi.workers.UringioWorker", "-b",
                             f"127.0.0.1:{port}", "--chdir", APPS, "--certfile", pki["server"],
                             "--keyfile", pki["server_key"], "operate_app:app"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "URINGIO_BACKEND": backend})
    try:
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", pki["ca"],
                                  f"https://127.0.0.1:{port}/scope"], capture_output=True,
                                 timeout=30)
            if out.returncode != 7 or time.monotonic() > deadline:   # 7: refused (booting)
                break
            time.sleep(0.1)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["scheme"] == "https"
    finally:
        assert stop_server(proc, timeout=30) == 0


def test_a_file_sent_with_pathsend_is_encrypted(backend, pki, tmp_path):
    # http.response.pathsend: on a plain connection the engine splices or
    # sendfiles the file; over TLS it must go through the record layer.
    content = bytes(range(256)) * 4096 + b"the end"   # 1 MiB and a bit
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    proc, port = start_server(["-m", "uringio", "serve", "asgi", "asgi_raw:app", "--app-dir",
                               APPS, "--port", "0", "--ssl-certfile", pki["server"],
                               "--ssl-keyfile", pki["server_key"]], backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
                client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"GET /pathsend?{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, body = read_response(tls)
        assert head.startswith(b"HTTP/1.1 200") and body == content
    finally:
        assert stop_server(proc) == 0


def test_bytes_that_are_not_tls_reset_the_connection_and_the_server_serves_on(backend, pki):
    proc, port = serve_tls(backend, pki)
    try:
        # Garbage instead of a ClientHello; then garbage after a handshake.
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
            try:
                assert b"HTTP/1.1" not in recv_until_eof(raw)   # an alert at most
            except ConnectionResetError:
                pass
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        tls = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(tls)[0].startswith(b"HTTP/1.1 200")
        # Under the TLS session, on the socket itself: an application-data
        # record that does not decrypt. The server drops the connection.
        os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        try:
            assert tls.recv(4096) == b""
        except (ssl.SSLError, OSError):
            pass   # (the alert, or the reset)
        tls.close()
        # The server is unharmed.
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", pki["ca"],
                              f"https://127.0.0.1:{port}/scope"], capture_output=True, timeout=30)
        assert out.returncode == 0 and json.loads(out.stdout)["scheme"] == "https"
    finally:
        assert stop_server(proc) == 0
    assert "Traceback" not in proc.stderr.read()


def test_a_handshake_not_done_within_the_header_timeout_is_closed(backend, pki):
    proc, port = serve_tls(backend, pki, "--header-timeout", "0.3")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as idle:
            # No ClientHello: closed after 0.3 s (it would be 60 s otherwise,
            # past this socket's timeout, which fails the test).
            try:
                assert idle.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        assert stop_server(proc) == 0


# -- serve http over TLS: every model --------------------------------------------------------


def read_responses(tls: ssl.SSLSocket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` responses framed by Content-Length, read in order from
    one connection (pipelined answers may share a record)."""
    data, answers = b"", []
    while len(answers) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            if len(rest) >= length:
                answers.append((head, rest[:length]))
                data = rest[length:]
                continue
        chunk = tls.recv(1 << 20)
        assert chunk, (answers, data[:200])
        data += chunk
    assert data == b""
    return answers


@pytest.mark.parametrize("model", ["single", "pool", "threads", "multi"])
def test_serve_http_over_tls_in_every_model(backend, pki, model, tmp_path):
    # A static file larger than the record layer's pieces (FILE_PIECE), then
    # two more requests pipelined behind it on one connection: each answer
    # whole and in order, the file's bytes encrypted (never spliced past
    # the record layer). Then a request that does not parse: its 400, and
    # the TLS stream ends cleanly (close_notify: the lingering close).
    content = os.urandom(600 * 1024) + b"the end"
    (tmp_path / "f.bin").write_bytes(content)
    workers = ["--workers", "2"] if model == "multi" else []
    if model == "threads":   # blocking sockets, no backend: once
        if backend != "uring":
            pytest.skip("the threads model has no backend: it runs once, beside uring")
        backend = "auto"
    proc, port = start_server(["-m", "uringio", "serve", "http", "--port", "0", "--model", model,
                               *workers, "--static", str(tmp_path), "--ssl-certfile",
                               pki["server"], "--ssl-keyfile", pki["server_key"]], backend)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
                client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            tls.sendall(b"GET /static/f.bin HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            (h1, file_body), (h2, hello), (h3, json_body) = read_responses(tls, 3)
            assert h1.startswith(b"HTTP/1.1 200") and file_body == content
            assert hello == b"Hello, World!" and json.loads(json_body) == {
                "message": "Hello, World!"}
            tls.sendall(b"NOT A REQUEST\r\n\r\n")
            (h4, _), = read_responses(tls, 1)
            assert h4.startswith(b"HTTP/1.1 400")
            assert tls.recv(100) == b""
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", pki["ca"],
                              f"https://127.0.0.1:{port}/"], capture_output=True, timeout=30)
        assert out.returncode == 0 and out.stdout == b"Hello, World!", out.stderr
    finally:
        assert stop_server(proc) == 0
    assert "Traceback" not in proc.stderr.read()


def test_tls_is_refused_for_an_app_that_does_not_serve_it():
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", "echo", "--port", "0",
                           "--ssl-certfile", "/x.pem"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "python -m uringio serve: error: TLS is served by serve asgi and serve http "
        "(--ssl-certfile)"), proc.stderr


# -- the record layer's sendfile, in process -------------------------------------------------


class _Transport:
    """What TLSLayer writes to: keeps the ciphertext, and says pause_writing
    once anything is buffered (a client that reads nothing yet)."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.layer = None
        self.paused = False

    def write(self, data: bytes) -> None:
        self.out.append(data)
        if self.layer is not None and not self.paused:
            self.paused = True
            self.layer.pause_writing()

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = close


def test_the_record_layer_reads_a_file_only_as_the_connection_drains(pki, tmp_path):
    from uringio.net.tls import FILE_PIECE, TLSLayer, server_context

    content = os.urandom(3 * FILE_PIECE + 5)
    (tmp_path / "f.bin").write_bytes(content)

    async def run() -> None:
        transport = _Transport()
        inner = asyncio.Protocol()
        layer = TLSLayer(server_context(pki["server"], pki["server_key"]), inner, 10)
        layer.connection_made(transport)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_context(pki).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        for _ in range(10):   # the handshake, through memory
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                layer.data_received(outgoing.read())
                incoming.write(transport.take())
        layer.data_received(outgoing.read())   # the client's Finished
        incoming.write(transport.take())        # (TLS 1.3's session tickets)
        transport.layer = layer   # from here on, every write fills the "socket"

        def plaintext() -> bytes:
            incoming.write(transport.take())
            got = b""
            while True:
                try:
                    got += client.read(1 << 20)
                except ssl.SSLWantReadError:
                    return got

        done: list = []
        layer.sendfile(open(tmp_path / "f.bin", "rb"), close=True, done=done.append)
        layer.write(b"after the file")
        received = plaintext()
        assert received == content[:FILE_PIECE]   # one piece; then it waits
        for _ in range(5):
            transport.paused = False
            layer.resume_writing()
            received += plaintext()
        assert received == content + b"after the file" and done == [len(content)]

        # A connection lost mid-file: the file is closed, done() told why.
        file = open(tmp_path / "f.bin", "rb")
        transport.paused = False
        layer.sendfile(file, close=True, done=done.append)
        assert not file.closed
        layer.connection_lost(None)
        assert file.closed and isinstance(done[-1], ConnectionError)

    asyncio.run(run())
