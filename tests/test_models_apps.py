"""serve http, resp and proxy under the pool and multi models, on both
backends: a real request or command through each, answered right; under
multi (two workers), through each worker."""

import os
import socket
import struct

import pytest

from conftest import recv_exactly, start_server, status_of, stop_server

SERVE = ["-m", "uringio", "serve", "--host", "127.0.0.1", "--port", "0"]
MODELS = {"pool": ["--model", "pool", "--threads", "2"],
          "multi": ["--model", "multi", "--workers", "2"]}
MAX_CONNECTIONS = 200   # tries at reaching both workers of multi


@pytest.fixture(params=sorted(MODELS))
def model(request) -> str:
    return request.param


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


class Served:
    """A server of ``app_args`` under ``model``: its process, its port, and
    the processes that serve (the workers under multi, else itself)."""

    def __init__(self, app_args: list[str], backend: str, model: str) -> None:
        self.proc, self.port = start_server([*SERVE, *app_args, *MODELS[model]], backend)
        self.model = model
        try:
            assert self.proc.listening_line == (f"listening on 127.0.0.1:{self.port} "
                                                f"(backend={backend}, model={model})")
            self.pids = children(self.proc.pid) if model == "multi" else {self.proc.pid}
            assert len(self.pids) == (2 if model == "multi" else 1)
        except BaseException:
            stop_server(self.proc)
            raise

    def stop(self) -> None:
        assert stop_server(self.proc) == 0, self.proc.stderr.read()
        for pid in self.pids:
            assert not os.path.exists(f"/proc/{pid}"), f"{pid} left behind"

    def each_server(self, talk) -> None:
        """``talk(sock, served)`` on new connections until every serving
        process has been talked to (one connection under pool), each
        checking its answers and calling ``served()`` while the connection
        is still open; at most MAX_CONNECTIONS connections."""
        seen: set[int] = set()
        for _ in range(MAX_CONNECTIONS):
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                owners: list[int] = []
                talk(sock, lambda sock=sock, owners=owners:
                     owners.append(serving_pid(sock, self.pids)))
                assert len(owners) == 1, "talk is to call served() once"
                seen.update(owners)
            if seen == self.pids:
                return
        raise AssertionError(f"{MAX_CONNECTIONS} connections reached only {seen} of {self.pids}")


def _proc_net_address(address: tuple) -> str:
    # /proc/net/tcp's form of an IPv4 address: the address as a host-order
    # word, the port, in hex.
    host, port = address[:2]
    word = struct.unpack("=I", socket.inet_aton(host))[0]
    return f"{word:08X}:{port:04X}"


def serving_pid(client: socket.socket, pids: set[int]) -> int:
    """Which of ``pids`` holds the server's end of the open connection
    ``client``: the socket's inode, from /proc/net/tcp, among their fds."""
    local = _proc_net_address(client.getpeername())
    remote = _proc_net_address(client.getsockname())
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    inodes = [row[9] for row in rows if row[1] == local and row[2] == remote]
    assert len(inodes) == 1 and inodes[0] != "0", inodes   # accepted
    link = f"socket:[{inodes[0]}]"
    owners = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                    owners.add(pid)
            except FileNotFoundError:
                pass   # an fd closed since the listing
    assert len(owners) == 1, (owners, pids)
    return owners.pop()


# -- serve http ------------------------------------------------------------------


def http_response(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """Status, head and body of a response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-head: {data!r}"
        data += chunk
        assert len(data) < 65536, data[:200]
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    body += recv_exactly(sock, length - len(body))
    return status_of(head), head, body


def test_serve_http(backend, model):
    server = Served(["http"], backend, model)
    try:
        def talk(sock, served):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert http_response(sock)[::2] == (200, b"Hello, World!")
            payload = os.urandom(3000)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % len(payload) + payload)
            status, head, body = http_response(sock)
            assert (status, body) == (200, payload)
            assert b"application/octet-stream" in head.lower()
            sock.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            assert http_response(sock)[::2] == (200, b'{"message":"Hello, World!"}')
            sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
            assert http_response(sock)[0] == 404
            served()

        server.each_server(talk)
    finally:
        server.stop()


# -- serve resp ------------------------------------------------------------------


def resp_command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_serve_resp(backend, model):
    server = Served(["resp"], backend, model)
    try:
        count = 0

        def talk(sock, served):
            nonlocal count
            count += 1
            # Each worker of multi has a store of its own: one connection's
            # SET is read back on that connection.
            key, value = b"key-%d" % count, os.urandom(100).hex().encode()
            request = (resp_command(b"PING") + resp_command(b"SET", key, value)
                       + resp_command(b"GET", key) + resp_command(b"INCR", b"n-%d" % count)
                       + resp_command(b"INCR", b"n-%d" % count) + resp_command(b"GET", b"nope"))
            expected = (b"+PONG\r\n+OK\r\n$%d\r\n%s\r\n:1\r\n:2\r\n$-1\r\n"
                        % (len(value), value))
            sock.sendall(request)
            assert recv_exactly(sock, len(expected)) == expected
            served()

        server.each_server(talk)
    finally:
        server.stop()


# -- serve proxy -----------------------------------------------------------------


@pytest.fixture
def upstream():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(10)
    yield sock
    sock.close()


@pytest.mark.parametrize("relay", ["copy", "splice"])
def test_serve_proxy(backend, model, relay, upstream):
    to = f"127.0.0.1:{upstream.getsockname()[1]}"
    server = Served(["proxy", "--to", to, "--relay", relay], backend, model)
    try:
        def talk(sock, served):
            request = os.urandom(50_000)
            sock.sendall(request)
            peer, _ = upstream.accept()   # the proxy's connection for this client
            with peer:
                peer.settimeout(10)
                assert recv_exactly(peer, len(request)) == request
                answer = os.urandom(70_000)
                peer.sendall(answer)
                assert recv_exactly(sock, len(answer)) == answer
                served()
                # The client's end of writing reaches the upstream, and back.
                sock.shutdown(socket.SHUT_WR)
                assert peer.recv(1) == b""
                peer.sendall(b"bye")
            assert recv_exactly(sock, 3) == b"bye"

        server.each_server(talk)
    finally:
        server.stop()
