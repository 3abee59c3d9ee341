import os
import socket

import pytest

from uringio import UringUnavailable, open_loop

BACKENDS = ["uring", "epoll"]


def _uring_reason() -> str | None:
    try:
        open_loop("uring").close()
    except UringUnavailable as exc:
        return str(exc)
    return None


_URING_SKIP = _uring_reason()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every IO behaviour test runs on both backends; uring is skipped, with
    the reason, only where io_uring cannot be set up at all."""
    if request.param == "uring" and _URING_SKIP:
        pytest.skip(f"io_uring unavailable: {_URING_SKIP}")
    return request.param


@pytest.fixture
def loop(backend):
    lp = open_loop(backend)
    yield lp
    lp.close()


@pytest.fixture
def uring_loop():
    if _URING_SKIP:
        pytest.skip(f"io_uring unavailable: {_URING_SKIP}")
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


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
