"""The CLI as a user runs it: serve echo on both backends, signals, info."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, start_server, stop_server

ECHO = ["-m", "uringio", "serve", "echo", "--host", "127.0.0.1", "--port", "0"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_echo_and_exit_cleanly_on_signal(backend, signum):
    proc, port = start_server(ECHO, backend)
    assert proc.listening_line == f"listening on 127.0.0.1:{port} (backend={backend})"
    try:
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        for i, client in enumerate(clients):
            client.sendall(b"ping %d" % i)
        for i, client in enumerate(clients):
            assert client.recv(100) == b"ping %d" % i
        pid_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert pid_fds >= 5 + 3
        rc = stop_server(proc, signum)
        assert rc == 0, proc.stderr.read()
        for client in clients:
            assert client.recv(100) == b""   # the server closed its side
            client.close()
    finally:
        stop_server(proc)


def test_serve_closes_every_fd_before_exit(backend):
    """In-process: the server's fds are all released by run_server's return."""
    import threading

    from uringio import run_server
    from uringio.apps import EchoProtocol

    before = set(os.listdir("/proc/self/fd"))
    ready = []
    # run_server installs signal handlers, which only the main thread may do:
    # it runs here, and a helper thread plays the client and sends SIGTERM.

    def client_then_stop():
        deadline = time.monotonic() + 5
        while not ready and time.monotonic() < deadline:
            time.sleep(0.01)
        server = ready[0]
        sock = socket.create_connection(server.address, timeout=5)
        sock.sendall(b"abc")
        assert sock.recv(10) == b"abc"
        os.kill(os.getpid(), signal.SIGTERM)
        assert sock.recv(10) == b""
        sock.close()

    helper = threading.Thread(target=client_then_stop)
    helper.start()
    old = signal.getsignal(signal.SIGTERM)
    run_server(EchoProtocol, "127.0.0.1", 0, backend=backend, on_listening=ready.append)
    helper.join(10)
    assert signal.getsignal(signal.SIGTERM) == old   # handlers restored
    assert set(os.listdir("/proc/self/fd")) == before


def test_uring_backend_fails_with_the_reason_when_unavailable():
    # kernel.io_uring_disabled can't be flipped in a test; a ring that cannot
    # be set up is simulated by an absurd RLIMIT_MEMLOCK-free failure instead:
    # entries far beyond the kernel's maximum give EINVAL for every flag set.
    code = ("import uringio.ring as r, uringio.proactor as p\n"
            "p.Ring = lambda *a, **k: r.Ring(1 << 20, 1 << 30)\n"
            "from uringio.cli import main\n"
            "main(['serve', 'echo', '--backend', 'uring', '--port', '0'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "UringUnavailable" in proc.stderr and "use --backend epoll" in proc.stderr


def test_info_reports_kernel_liburing_and_auto_backend():
    out = subprocess.run([sys.executable, "-m", "uringio", "info", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    report = json.loads(out)
    assert report["kernel"] == os.uname().release
    assert report["liburing"].startswith("2.")
    assert report["auto_backend"] in ("uring", "epoll")
    if report["io_uring"] == "available":
        assert report["opcodes"]["ACCEPT"] and report["opcodes"]["SEND"]
        assert "multishot recv" in report["features"]
    else:
        assert report["reason"]
    text = subprocess.run([sys.executable, "-m", "uringio", "info"], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=True).stdout
    assert "auto backend" in text and "liburing" in text
