"""Where a server listens: a TCP host and port, a Unix socket path, or a
socket it is handed (``--fd N``, or systemd's socket activation).

A ``Bind`` says which, and opens the listening socket. The ``multi`` model
asks it whether its workers can each open their own (a TCP port, shared
with SO_REUSEPORT) or must share the one socket opened before they are
forked (a Unix socket path, whose file only one socket can be bound to, or
a socket handed in, which exists once).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import weakref
from dataclasses import dataclass

from ..errors import ListenError

DEFAULT_BACKLOG = 4096
SD_LISTEN_FDS_START = 3   # systemd hands its sockets on from fd 3 (sd_listen_fds(3))

# The listening sockets other processes accept on too (``share``).
_shared: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def share(sock: socket.socket) -> socket.socket:
    """Say that other processes accept on the listening socket ``sock`` too
    (a pre-fork server's workers on one Unix socket or inherited fd,
    gunicorn's workers), and return it. uringio's servers then accept there
    one connection at a time, so that the kernel spreads the connections
    over the processes: on io_uring it wakes one accept per connection,
    always the oldest, and a multishot accept stays the oldest for good --
    one process would take them all. (Forked with the socket, the mark
    holds in the children.)"""
    _shared.add(sock)
    return sock


def is_shared(sock: socket.socket) -> bool:
    """Whether ``share(sock)`` was said."""
    return sock in _shared


def listen(host: str, port: int, backlog: int = DEFAULT_BACKLOG,
           reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket. TCP_NODELAY set here is inherited by every
    accepted socket on Linux, which saves a setsockopt per connection.

    Raises ListenError (an OSError keeping the errno) when the address
    cannot be bound: the port in use, a privileged port, not our address.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port))
            sock.listen(backlog)
        except OSError as exc:
            # What the environment refuses, said with its fix; the setsockopt
            # calls above fail only on a bug, and keep their own error.
            raise _bind_error(exc, host, port) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def listen_unix(path: str, backlog: int = DEFAULT_BACKLOG,
                perms: int | None = None) -> socket.socket:
    """A listening Unix stream socket at ``path``, replacing a socket file a
    server left there (never any other kind of file); mode ``perms`` if
    given, else what the umask leaves. Raises ListenError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _unix_error(exc, path) from exc
        try:
            sock.bind(path)
            if perms is not None:
                os.chmod(path, perms)
            sock.listen(backlog)
        except OSError as exc:
            raise _unix_error(exc, path) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def _unix_error(exc: OSError, path: str) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        why = "a file that is not a socket is in the way; remove it or pick another --uds"
    elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
        why = "its directory does not exist"
    else:
        why = exc.strerror or str(exc)
    return ListenError(exc.errno, f"cannot listen on unix:{path}: {why}")


def _bind_error(exc: OSError, host: str, port: int) -> ListenError:
    """The ListenError for ``exc``, raised by bind(2) or listen(2) on ``host:port``."""
    if exc.errno == errno.EADDRINUSE:
        why = "address already in use; pick another --port, or 0 for a free one"
    elif exc.errno == errno.EACCES and 0 < port < 1024:
        why = "permission denied: binding ports below 1024 needs root or CAP_NET_BIND_SERVICE"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = (f"{host} is not an address of this machine; give --host one of its "
               "addresses, 127.0.0.1, or 0.0.0.0 for all")
    else:
        # socket.gaierror (an unknown host name) carries an EAI_* code in
        # errno, which os.strerror would misread: its own text is right.
        why = exc.strerror or str(exc)
    return ListenError(exc.errno, f"cannot listen on {describe((host, port))}: {why}")


def adopt(fd: int, backlog: int = DEFAULT_BACKLOG, what: str = "--fd") -> socket.socket:
    """The stream socket ``fd`` (inherited from whoever started us), made a
    listening one: it may come bound and not yet listening (supervisor,
    ``socket.socket().bind`` in a wrapper) or listening (systemd, gunicorn).
    Raises ListenError when ``fd`` is not a bound stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        why = "no such open fd" if exc.errno == errno.EBADF else "not a socket"
        raise ListenError(exc.errno, f"cannot listen on {what} {fd}: {why}") from None
    try:
        if sock.type != socket.SOCK_STREAM:
            raise ListenError(errno.EINVAL, f"cannot listen on {what} {fd}: not a stream "
                                            "socket (TCP or Unix)")
        name = sock.getsockname()
        if not (name[1] if isinstance(name, tuple) else name):
            # listen(2) would bind it to a port of the kernel's choosing, on
            # every address: nobody would know where it serves.
            raise ListenError(errno.EINVAL, f"cannot listen on {what} {fd}: the socket is "
                                            "not bound to an address")
        try:
            sock.listen(backlog)
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {what} {fd}: "
                                         f"{exc.strerror}") from None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.detach()   # not ours to close: the fd stays as it was handed in
        raise
    return sock


def systemd_fd() -> int | None:
    """The socket systemd's socket activation hands this process, or None
    when it hands none (LISTEN_PID names another process, or is unset).

    The variables are removed once read, as sd_listen_fds(1) does, so that
    a process we start does not take them for its own. Raises ListenError
    when systemd hands several: one server serves one socket."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = os.environ.get("LISTEN_FDS", "0")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count == "1":
        return SD_LISTEN_FDS_START
    raise ListenError(errno.EINVAL, f"systemd socket activation handed LISTEN_FDS={count} "
                                    "sockets; uringio serves exactly one (one ListenStream= "
                                    "per .socket unit)")


@dataclass(frozen=True)
class Bind:
    """Where to listen: ``uds`` (a Unix socket path) or ``fd`` (a socket
    handed in) when given, else systemd's socket when it hands one, else
    TCP ``host``:``port``."""

    host: str = "127.0.0.1"
    port: int = 0
    uds: str | None = None
    uds_perms: int | None = None
    fd: int | None = None
    backlog: int = DEFAULT_BACKLOG
    fd_from: str = "--fd"   # where ``fd`` came from, as error messages name it

    def __post_init__(self) -> None:
        if self.uds is not None and self.fd is not None:
            raise ValueError("give a Unix socket path or an fd, not both")

    @property
    def shared(self) -> bool:
        """True when worker processes must share one socket opened before
        they are forked (anything but a TCP host:port)."""
        return self.uds is not None or self.fd is not None

    def resolved(self) -> Bind:
        """This Bind, with systemd's socket as ``fd`` when it hands one and
        no ``uds``/``fd`` was asked for. Read once, before any fork."""
        if self.shared:
            return self
        fd = systemd_fd()
        if fd is None:
            return self
        return Bind(self.host, self.port, fd=fd, backlog=self.backlog,
                    fd_from="the socket systemd handed, fd")

    def open(self, reuse_port: bool = False, port: int | None = None) -> socket.socket:
        """The listening socket (``port`` overrides ``self.port``: a
        ``multi`` worker's, the one its supervisor reserved). Raises
        ListenError."""
        if self.uds is not None:
            return listen_unix(self.uds, self.backlog, self.uds_perms)
        if self.fd is not None:
            return adopt(self.fd, self.backlog, self.fd_from)
        return listen(self.host, self.port if port is None else port, self.backlog, reuse_port)

    def release(self, sock: socket.socket) -> None:
        """Close ``sock``, and remove the socket file it was bound to when
        this Bind made it (a Unix socket path)."""
        sock.close()
        if self.uds is not None:
            try:
                if stat.S_ISSOCK(os.stat(self.uds).st_mode):
                    os.unlink(self.uds)
            except OSError:
                pass


def address_of(sock: socket.socket) -> tuple | str:
    """``(host, port)`` of a TCP socket, the path of a Unix one."""
    name = sock.getsockname()
    return tuple(name[:2]) if isinstance(name, tuple) else name


def describe(address: tuple | str) -> str:
    """An address as the "listening on" line and error messages give it:
    ``127.0.0.1:8000``, ``[::1]:8000``, ``unix:/run/app.sock``."""
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
