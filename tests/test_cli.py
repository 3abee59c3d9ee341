"""The CLI as a user runs it: serve echo on both backends, signals, info."""

import gc
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import REPO, start_server, stop_server
from seccomp import deny_io_uring

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
    from uringio.protocols.apps import EchoProtocol

    # Files earlier tests left to the garbage collector (a Popen's pipes)
    # are closed first, not while the server runs.
    gc.collect()
    before = set(os.listdir("/proc/self/fd"))
    servers = []
    listening = threading.Event()
    raised: list[BaseException] = []
    # run_server installs signal handlers, which only the main thread may do:
    # it runs here, and a helper thread plays the client and sends SIGTERM.
    # What the helper raises is handed to the main thread, which re-raises it.

    def on_listening(server):
        servers.append(server)
        listening.set()

    def client_then_stop():
        stopped = False
        try:
            assert listening.wait(30), "the server never started listening"
            sock = socket.create_connection(servers[0].address, timeout=10)
            sock.sendall(b"abc")
            assert sock.recv(10) == b"abc"
            os.kill(os.getpid(), signal.SIGTERM)
            stopped = True
            assert sock.recv(10) == b""   # the server closed its side
            sock.close()
        except BaseException as exc:   # re-raised in the main thread
            raised.append(exc)
            if listening.is_set() and not stopped:
                # End run_server all the same, without the signal: the
                # test fails with this exception rather than hanging.
                loop = servers[0].loop
                loop.call_soon_threadsafe(loop.stop)

    helper = threading.Thread(target=client_then_stop)
    helper.start()
    old = signal.getsignal(signal.SIGTERM)
    try:
        run_server(EchoProtocol, "127.0.0.1", 0, backend=backend, on_listening=on_listening)
    finally:
        helper.join(30)
    assert not helper.is_alive(), "the client thread did not finish"
    if raised:
        raise raised[0]
    assert signal.getsignal(signal.SIGTERM) == old   # handlers restored
    assert set(os.listdir("/proc/self/fd")) == before


def serve_expecting_error(args: list[str], preexec_fn=None) -> str:
    """Run ``python -m uringio serve ARGS`` as a user would, expect it to
    fail as a user's mistake or environment should (exit status 2, one line
    on stderr, no traceback), and return that line."""
    proc = subprocess.run([sys.executable, "-m", "uringio", "serve", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30, preexec_fn=preexec_fn)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    return lines[0]


@pytest.fixture
def taken_port():
    """A port some other socket is listening on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_port_in_use_is_one_line(backend, taken_port):
    line = serve_expecting_error(["echo", "--port", str(taken_port), "--backend", backend])
    assert line == (f"uringio: error: cannot listen on 127.0.0.1:{taken_port}: address already "
                    "in use; pick another --port, or 0 for a free one")


def test_port_in_use_under_multi_is_one_line(taken_port):
    # The supervisor reserves the port in the parent, before any worker starts.
    line = serve_expecting_error(["echo", "--port", str(taken_port), "--backend", "epoll",
                                  "--model", "multi", "--workers", "2"])
    assert line.startswith(f"uringio: error: cannot listen on 127.0.0.1:{taken_port}: "
                           "address already in use")


@pytest.mark.parametrize("model", [["--model", "single"], ["--model", "multi", "--workers", "2"]],
                         ids=["single", "multi"])
def test_uring_refused_is_one_line(model):
    # The kernel itself refuses: io_uring_setup gets EPERM from a seccomp
    # filter, as in a container. Under multi the workers inherit the filter,
    # and the first one's failure ends the supervisor instead of a restart.
    line = serve_expecting_error(["echo", "--port", "0", "--backend", "uring", *model],
                                 preexec_fn=deny_io_uring)
    assert line.startswith("uringio: error: io_uring_queue_init failed: io_uring is disabled here")
    assert line.endswith("; use --backend epoll")


def test_auto_falls_back_to_epoll_when_uring_refused():
    proc, port = start_server(ECHO, "auto", preexec_fn=deny_io_uring)
    try:
        assert proc.listening_line == f"listening on 127.0.0.1:{port} (backend=epoll)"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(100) == b"ping"
        assert stop_server(proc) == 0
        lines = [line for line in proc.stderr.read().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert lines[0].startswith("WARNING uringio: io_uring unavailable")
        assert "(EPERM: io_uring_queue_init failed: io_uring is disabled here" in lines[0]
        assert lines[0].endswith("using epoll")
    finally:
        stop_server(proc)


def test_missing_static_directory_is_one_line(tmp_path):
    missing = tmp_path / "nope"
    line = serve_expecting_error(["http", "--port", "0", "--static", str(missing)])
    assert line == (f"python -m uringio serve: error: argument --static: '{missing}' is not a "
                    "directory; give the directory whose files to serve")


@pytest.mark.parametrize("option, value, expected", [
    ("--workers", "-1", "0 (one worker process per CPU) or more"),
    ("--threads", "0", "1 or more worker threads"),
    ("--idle-timeout", "0", "a number of seconds above 0"),
    ("--drain-timeout", "-1", "a number of seconds above 0"),
    ("--timeout-graceful-shutdown", "0", "a number of seconds above 0"),
    ("--backlog", "0", "a backlog of 1 or more connections"),
    ("--uds-perms", "9", "an octal file mode, say 660"),
    ("--fd", "-3", "an open fd number"),
    ("--header-timeout", "nan", "a number of seconds above 0"),
    ("--max-body", "0", "1 or more bytes"),
])
def test_bad_value_is_one_line(option, value, expected):
    line = serve_expecting_error(["echo", "--port", "0", option, value])
    # (one option, two names: argparse names both)
    name = {"--drain-timeout": "--drain-timeout/--timeout-graceful-shutdown",
            "--timeout-graceful-shutdown": "--drain-timeout/--timeout-graceful-shutdown"}
    assert line == (f"python -m uringio serve: error: argument {name.get(option, option)}: "
                    f"expected {expected}, got '{value}'")


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
