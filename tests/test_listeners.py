"""Sockets from outside, as an operator sets them up: ``--uds PATH`` (curl
--unix-socket), ``--fd N`` (a socket a parent process hands down),
systemd's socket activation (``systemd-socket-activate``, the real tool),
and the ``multi`` model sharing one such socket among its workers. Each on
both backends; the errors of a socket that cannot be served, one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest

from conftest import REPO, recv_until_eof, status_of, stop_server, wait_for

APPS = os.path.join(REPO, "tests", "apps")
TIMEOUT = 10.0


def start(argv: list[str], backend: str, listening: str, pass_fds=(), prefix=()):
    """``python -m uringio ARGV --backend BACKEND`` (after ``prefix``, a
    wrapper such as systemd-socket-activate), once it prints a "listening
    on LISTENING" line. Stopped by its pid (``stop_server``)."""
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "uringio", *argv,
                             "--backend", backend], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, pass_fds=pass_fds)
    line = proc.stdout.readline()
    if not line.startswith(f"listening on {listening} (backend={backend}"):
        proc.kill()
        proc.wait()
        raise AssertionError(f"no listening line for {listening}: {line!r} {proc.stderr.read()}")
    return proc


def asgi_over(connect) -> dict:
    """GET /scope of tests/apps/operate_app.py over the socket ``connect()``
    returns: the scope's server and client, as the app saw them."""
    with connect() as sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = recv_until_eof(sock)
    assert status_of(answer) == 200, answer
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def unix_client(path: str):
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        return sock
    return connect


def tcp_client(port: int):
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- --uds -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "multi"])
def test_serve_asgi_on_a_unix_socket_with_curl(backend, tmp_path, workers):
    path = str(tmp_path / "app.sock")
    (tmp_path / "app.sock").write_bytes(b"")   # not a socket: a plain file is never replaced
    line = subprocess.run([sys.executable, "-m", "uringio", "serve", "asgi", "operate_app:app",
                           "--app-dir", APPS, "--uds", path, "--backend", backend],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert line.returncode == 2 and line.stderr.strip() == (
        f"uringio: error: cannot listen on unix:{path}: a file that is not a socket is in "
        "the way; remove it or pick another --uds"), line.stderr
    os.unlink(path)
    # A socket file a killed server left behind is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    proc = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS, "--uds", path,
                  "--uds-perms", "660", *workers], backend, f"unix:{path}")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        for _ in range(4 if workers else 1):
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", path,
                                  "http://localhost/scope"], capture_output=True, timeout=30)
            assert out.returncode == 0, out.stderr
            # The ASGI scope of a Unix socket: server [path, None], no client.
            scope = json.loads(out.stdout)
            assert (scope["server"], scope["client"]) == ([path, None], None)
    finally:
        assert stop_server(proc) == 0
    assert not os.path.exists(path)   # removed at exit


def test_workers_sharing_one_socket_take_turns_at_its_connections(backend, tmp_path):
    # Two workers on one Unix socket; the one that took the first connection
    # is then busy (its loop held). The next connection is the other's to
    # take: on io_uring the kernel wakes one accept per connection, always
    # the oldest in line, and a multishot accept never leaves the line --
    # the busy worker would be woken for every connection while the other
    # idled. (epoll wakes both.)
    path = str(tmp_path / "app.sock")
    let_go = tmp_path / "let-go"
    proc = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS, "--uds", path,
                  "--workers", "2"], backend, f"unix:{path}")
    busy = unix_client(path)()
    try:
        busy.sendall(f"GET /busy?{let_go} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "\r\n".encode())
        # (asked before its worker is busy, /scope may go to it on epoll)
        assert wait_for(lambda: os.path.exists(f"{let_go}.busy"), TIMEOUT)
        other = asgi_over(unix_client(path))["pid"]
        let_go.write_bytes(b"")
        held = json.loads(recv_until_eof(busy).partition(b"\r\n\r\n")[2])["pid"]
        assert other != held
    finally:
        busy.close()
        assert stop_server(proc) == 0


def test_serve_http_on_a_unix_socket(backend, tmp_path):
    path = str(tmp_path / "http.sock")
    proc = start(["serve", "http", "--uds", path], backend, f"unix:{path}")
    try:
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", path,
                              "http://localhost/"], capture_output=True, timeout=30)
        assert out.returncode == 0 and out.stdout == b"Hello, World!", out
    finally:
        assert stop_server(proc) == 0
    assert not os.path.exists(path)


# -- --fd --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
@pytest.mark.parametrize("listening", [False, True], ids=["bound", "listening"])
def test_serve_a_socket_handed_in_with_fd(backend, tmp_path, family, listening):
    if family == "tcp":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{sock.getsockname()[1]}"
        connect = tcp_client(sock.getsockname()[1])
    else:
        path = str(tmp_path / "fd.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        where = f"unix:{path}"
        connect = unix_client(path)
    if listening:
        sock.listen()
    with sock:
        proc = start(["serve", "asgi", "operate_app:app", "--app-dir", APPS,
                      "--fd", str(sock.fileno())], backend, where, pass_fds=[sock.fileno()])
        try:
            scope = asgi_over(connect)
            assert (scope["server"] == [path, None] if family == "unix"
                    else scope["server"][1] == sock.getsockname()[1])
        finally:
            assert stop_server(proc) == 0
        # The socket was handed in, not made: it is still there, still bound.
        assert sock.getsockname()


def one_line_failure(argv: list[str], pass_fds=()) -> str:
    proc = subprocess.run([sys.executable, "-m", "uringio", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=30, pass_fds=pass_fds)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    return lines[0]


def test_an_fd_that_cannot_be_served_is_one_line():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket() as unbound:
        assert one_line_failure(["serve", "echo", "--fd", str(udp.fileno())],
                                [udp.fileno()]) == (
            f"uringio: error: cannot listen on --fd {udp.fileno()}: not a stream socket "
            "(TCP or Unix)")
        # An unbound TCP socket: listen(2) would bind it to a random port.
        assert one_line_failure(["serve", "echo", "--fd", str(unbound.fileno())],
                                [unbound.fileno()]) == (
            f"uringio: error: cannot listen on --fd {unbound.fileno()}: the socket is not "
            "bound to an address")
    # A number nothing is open on in the child.
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    assert one_line_failure(["serve", "echo", "--fd", str(fd)]) == (
        f"uringio: error: cannot listen on --fd {fd}: no such open fd")


# -- systemd socket activation -------------------------------------------------------------


def socket_activate(*listen: str) -> list[str]:
    tool = shutil.which("systemd-socket-activate")
    assert tool, "systemd-socket-activate is missing (scripts/setup.sh --test installs systemd)"
    return [tool, *(f"--listen={address}" for address in listen)]


def test_systemd_socket_activation_hands_serve_asgi_its_socket(backend):
    port = free_port()
    argv = [*socket_activate(f"127.0.0.1:{port}"), sys.executable, "-m", "uringio", "serve",
            "asgi", "operate_app:app", "--app-dir", APPS, "--port", "1", "--backend", backend]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        # The tool listens, and starts the server at the first connection
        # (which waits in the socket's backlog meanwhile).
        assert proc.stderr.readline().startswith(f"Listening on 127.0.0.1:{port}")
        with tcp_client(port)() as first:
            first.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            line = proc.stdout.readline()
            assert line.startswith(f"listening on 127.0.0.1:{port} (backend={backend}"), line
            answer = recv_until_eof(first)
        # Served on systemd's socket, not on --port.
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["server"] == ["127.0.0.1", port]
        assert asgi_over(tcp_client(port))["server"] == ["127.0.0.1", port]
    finally:
        assert stop_server(proc) == 0


def test_systemd_socket_activation_with_two_sockets_is_refused_in_one_line():
    first, second = free_port(), free_port()
    proc = subprocess.Popen([*socket_activate(f"127.0.0.1:{first}", f"127.0.0.1:{second}"),
                             sys.executable, "-m", "uringio", "serve", "echo"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2):
            assert proc.stderr.readline().startswith("Listening on 127.0.0.1:")
        with tcp_client(first)():   # the first connection starts it
            assert proc.wait(30) == 2
    finally:
        stop_server(proc)
    assert proc.stderr.read().splitlines()[-1] == (
        "uringio: error: systemd socket activation handed LISTEN_FDS=2 sockets; uringio "
        "serves exactly one (one ListenStream= per .socket unit)")


def test_a_systemd_socket_that_cannot_serve_is_named_in_one_line():
    # A datagram socket (ListenDatagram=): refused, naming systemd's socket
    # (not --fd, which nobody gave).
    port = free_port()
    proc = subprocess.Popen([*socket_activate(f"127.0.0.1:{port}"), "--datagram",
                             sys.executable, "-m", "uringio", "serve", "echo"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline().startswith(f"Listening on 127.0.0.1:{port}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"start", ("127.0.0.1", port))   # the first datagram starts it
            assert proc.wait(30) == 2
    finally:
        stop_server(proc)
    assert proc.stderr.read().splitlines()[-1] == (
        "uringio: error: cannot listen on the socket systemd handed, fd 3: not a stream socket "
        "(TCP or Unix)")


def test_listen_fds_for_another_process_is_not_taken(backend):
    # LISTEN_PID names another process (a parent's variables, inherited):
    # not ours, so --port serves.
    env = dict(os.environ, LISTEN_PID="1", LISTEN_FDS="1")
    proc = subprocess.Popen([sys.executable, "-m", "uringio", "serve", "echo", "--port", "0",
                             "--backend", backend], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), (line, proc.stderr)
    finally:
        assert stop_server(proc) == 0
