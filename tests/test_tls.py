"""``serve asgi`` over TLS, with real clients: curl and Python's ``ssl``
(HTTPS, ALPN http/1.1, keep-alive), a client certificate required and
refused, and a WebSocket over TLS (the ``websockets`` client). The
certificates are made for each run with the openssl command. Both
backends, each server stopped by its pid."""

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
