import os
import socket
import time

import pytest

import uringio
from uringio import UringUnavailable, open_loop

BACKENDS = ["uring", "epoll"]


def _uring_reason() -> str | None:
    try:
        open_loop("uring").close()
    except UringUnavailable as exc:
        return str(exc)
    return None


_URING_SKIP = _uring_reason()

# URINGIO_REQUIRE_URING=1 (CI sets it): where io_uring cannot be set up,
# the tests that need it fail instead of skipping, so that a regression in
# setting up the ring cannot pass as a run of skips.
REQUIRE_URING = os.environ.get("URINGIO_REQUIRE_URING", "") not in ("", "0")


def skip_or_fail(reason: str, allow_module_level: bool = False) -> None:
    """Skip for ``reason`` -- io_uring (or the binding) is missing -- or,
    under URINGIO_REQUIRE_URING=1, fail with it."""
    if REQUIRE_URING:
        pytest.fail(f"{reason} (and URINGIO_REQUIRE_URING=1 requires io_uring)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def skip_unless_uring() -> None:
    """Every test that needs io_uring calls this (directly, or through the
    fixtures below): skipped, with the reason, where io_uring cannot be set
    up; failed instead under URINGIO_REQUIRE_URING=1."""
    if _URING_SKIP:
        skip_or_fail(f"io_uring unavailable: {_URING_SKIP}")


@pytest.fixture
def uring_available() -> None:
    skip_unless_uring()


# For a test or module that needs io_uring but no loop: ``@needs_uring``,
# or ``pytestmark = needs_uring``.
needs_uring = pytest.mark.usefixtures("uring_available")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every IO behaviour test runs on both backends; uring is skipped, with
    the reason, only where io_uring cannot be set up at all (and fails
    there under URINGIO_REQUIRE_URING=1)."""
    if request.param == "uring":
        skip_unless_uring()
    return request.param


@pytest.fixture
def loop(backend):
    lp = open_loop(backend)
    yield lp
    lp.close()


@pytest.fixture
def uring_loop():
    skip_unless_uring()
    lp = open_loop("uring")
    yield lp
    lp.close()


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    yield sock
    sock.close()


def connected_pair():
    """A connected TCP pair on 127.0.0.1: (server-side fd, client socket)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    client = socket.create_connection(lst.getsockname())
    server, _ = lst.accept()
    lst.close()
    server.setblocking(False)
    return server.detach(), client


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from a blocking socket; fails on an early EOF
    rather than waiting for bytes that will never come."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes: {data[-64:]!r}"
        data += chunk
    return data


def recv_until_eof(sock: socket.socket) -> bytes:
    """Everything a blocking socket receives until the peer closes."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` to 127.0.0.1:``port`` and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return recv_until_eof(s)


def status_of(response: bytes) -> int:
    """The status code of an HTTP response's first line."""
    return int(response.split(b" ", 2)[1])


def raised_in_thread(fn) -> BaseException | None:
    """Call ``fn()`` in a thread of its own; what it raised, or None."""
    import threading

    raised: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:   # handed to the caller, which asserts on it
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the thread did not finish"
    return raised[0] if raised else None


class signal_off_the_main_thread:
    """``with signal_off_the_main_thread(signum):`` -- ``signum`` sent to the
    process once the block has run for ``delay`` seconds, and taken by a
    thread of its own (the main thread blocks it meanwhile). The main
    thread's wait is then not interrupted, as when a signal lands just
    before the wait began: only the C-level handler's wakeup write
    (signal.set_wakeup_fd) can end it. Python still runs the handler in the
    main thread, once it is back at bytecode."""

    def __init__(self, signum: int, delay: float = 0.2) -> None:
        import threading

        self.signum = signum
        self.go = threading.Event()

        def send() -> None:
            if self.go.wait(10):
                time.sleep(delay)
                os.kill(os.getpid(), signum)

        # Created before the main thread blocks the signal: its mask is
        # the one it starts with.
        self.thread = threading.Thread(target=send)
        self.thread.start()

    def __enter__(self):
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, {self.signum})
        self.go.set()
        return self

    def __exit__(self, *exc_info) -> None:
        import signal

        self.go.set()
        self.thread.join(10)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {self.signum})


def wait_for(predicate, timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it is true (then True) or ``timeout`` seconds
    have passed (then False), for a condition another process or thread
    brings about. The timeout only bounds a hang: it is never a measurement,
    so it is generous."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(0.01)
    return True


async def eventually(predicate, timeout: float = 30.0) -> bool:
    """``wait_for`` inside a coroutine: the event loop runs meanwhile."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        await asyncio.sleep(0.005)
    return True


def readable(sock) -> bool:
    """Whether ``sock`` has bytes (or an end of file) to read now."""
    import select

    return bool(select.select([sock], [], [], 0)[0])


def threads_of(pid: int) -> int:
    """How many threads process ``pid`` runs, leaving out io_uring's kernel
    workers (iou-wrk-*, iou-sqp-*), which /proc lists among them."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                count += not f.read().startswith("iou-")
        except FileNotFoundError:   # the thread ended meanwhile
            pass
    return count


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.dirname(os.path.abspath(uringio.__file__))

# URINGIO_TEST_INSTALLED=1 (scripts/dist.py sets it): the suite runs against
# an installed wheel, from a copy of the checkout without uringio/, so that a
# file missing from the wheel fails it. Every import, here and in the servers
# the tests start (cwd=REPO), must then be the wheel's.
INSTALLED = os.environ.get("URINGIO_TEST_INSTALLED", "") not in ("", "0")
if INSTALLED and (os.path.exists(os.path.join(REPO, "uringio"))
                  or PACKAGE_DIR.startswith(REPO + os.sep)):
    raise pytest.UsageError(f"URINGIO_TEST_INSTALLED=1, but uringio is imported from "
                            f"{PACKAGE_DIR} beside the tests in {REPO}")


def start_server(argv: list[str], backend: str, preexec_fn=None):
    """Start a server subprocess that prints ``listening on HOST:PORT
    (backend=...)``; returns (process, port). The caller stops it by pid
    (``stop_server``)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, *argv, "--backend", backend],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=preexec_fn)
    line = proc.stdout.readline()
    if not line.startswith("listening on 127.0.0.1:"):
        proc.kill()
        proc.wait()
        raise AssertionError(f"no listening line: {line!r} {proc.stderr.read()}")
    if backend != "auto" and f"backend={backend}" not in line:
        proc.kill()
        proc.wait()
        raise AssertionError(f"not on backend {backend}: {line!r}")
    proc.listening_line = line.rstrip("\n")
    return proc, int(line.split(":")[1].split()[0])


def stop_server(proc, signum=None, timeout: float = 10.0) -> int:
    """Signal the server (SIGTERM by default) and wait; kill it if it hangs."""
    import signal as signal_mod

    if proc.poll() is None:
        proc.send_signal(signum or signal_mod.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def proc_status(pid: int, field: str) -> int:
    """A kB figure (VmRSS, VmHWM) from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)
