"""A Redis-compatible key-value server: ``python -m uringio serve resp``.

It speaks RESP2, the protocol of redis-cli, redis-benchmark and every Redis
client library, and RESP3 on a connection that asks for it with ``HELLO 3``
(redis-py 8 does so by default; for the commands here the two differ only
in how a missing value is written). A request is an array of bulk strings,
``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``, or an inline line, ``GET k\\r\\n``,
as typed into telnet.

Discussion: the parser is the hot path. Under ``redis-benchmark -P 16`` a
chunk holds sixteen or more requests, and the cost per request in Python is
what sets the throughput. So a chunk is cut into lines by one ``split``,
after a check in C (``_build/protocols/resp_scan.c``) that the split lines up with the
framing; each request then costs a slice of that list and one dict lookup
that finds its handler and checks its argument count together. Every
command is executed as soon as it is whole (a GET sees the SET before it in
the same chunk), and all of the chunk's replies go out joined in one
``write``. What the check does not admit (an inline command, a value holding
a CRLF, a request cut short, anything malformed) goes to a parser that walks
the chunk with ``bytes.find``: the arguments of a half-read array are kept
with the count still missing, so nothing is parsed twice, and a large bulk
string that arrives in many chunks is joined once, when enough bytes are
there for it to be whole, not once per chunk.

Errors: a command that is unknown or has the wrong arguments is answered
``-ERR ...`` and the connection goes on. Framing that cannot be parsed is
answered ``-ERR Protocol error: ...`` and the connection is closed, as Redis
does, since where the next request starts is unknown. Lengths are bounded as
Redis bounds them, and memory is spent only on bytes that have arrived,
never on a length a client declares.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from time import monotonic

from .._version import __version__
from ..net.connection import Connection, Protocol
from ._resp import lib as _resp_lib

resp_scan = _resp_lib.uio_resp_scan

# Redis's own limits: proto-max-bulk-len, the multibulk length limit, and
# PROTO_INLINE_MAX_SIZE for a line (an inline request or a length header).
MAX_BULK = 512 * 1024 * 1024
MAX_ARGS = 1024 * 1024
MAX_LINE = 64 * 1024

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

OK = b"+OK\r\n"
NULL_RESP2 = b"$-1\r\n"
NULL_RESP3 = b"_\r\n"
EMPTY_ARRAY = b"*0\r\n"
NOT_INTEGER = b"-ERR value is not an integer or out of range\r\n"
SYNTAX_ERROR = b"-ERR syntax error\r\n"

# Array headers b"*1" to b"*1024" -> argument count: the fast path's
# requests, as resp_scan.c admits them (UIO_RESP_MAX_ARGS).
ARGC = {b"*%d" % n: n for n in range(1, 1025)}

# What CONFIG GET reports: no snapshots, no append-only file.
PARAMETERS = {b"save": b"", b"appendonly": b"no"}


class ProtocolError(Exception):
    """Framing that cannot be parsed; ``args[0]`` is the reason, as bytes."""


class Store:
    """One process's keys. Values are bytes; a key with a time to live also
    has a deadline on the monotonic clock, checked whenever the key is read,
    so an expired key is gone for every command without a timer per key.

    A key that is never read again is reclaimed by ``sweep``: keys with a
    deadline are also filed by the second it falls in, and a sweep drops
    every bucket of a second that has passed, so the cost is per expired
    key, never a scan of the store."""

    __slots__ = ("data", "expires", "buckets", "swept_to")

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.expires: dict[bytes, float] = {}
        self.buckets: dict[int, set[bytes]] = {}   # second -> keys whose deadline is in it
        self.swept_to = int(monotonic())            # the buckets before this second are gone

    def get(self, key: bytes) -> bytes | None:
        value = self.data.get(key)
        # Until some key has a deadline, an empty dict is the whole test.
        if value is not None and self.expires:
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= monotonic():
                self._forget(key)
                del self.data[key]
                return None
        return value

    def set(self, key: bytes, value: bytes, deadline: float | None = None) -> None:
        """Set ``key``, replacing any time to live with ``deadline``."""
        self.data[key] = value
        if deadline is not None:
            if key in self.expires:
                self._forget(key)
            self.expires[key] = deadline
            self.buckets.setdefault(int(deadline), set()).add(key)
        elif self.expires and key in self.expires:
            self._forget(key)

    def update(self, key: bytes, value: bytes) -> None:
        """Set ``key`` and keep its time to live, as INCR does."""
        self.data[key] = value

    def delete(self, key: bytes) -> bool:
        if self.get(key) is None:
            return False
        del self.data[key]
        if key in self.expires:
            self._forget(key)
        return True

    def _forget(self, key: bytes) -> None:
        """Drop ``key``'s deadline, and its entry in the buckets."""
        second = int(self.expires.pop(key))
        bucket = self.buckets.get(second)
        if bucket is not None:
            bucket.discard(key)
            if not bucket:
                del self.buckets[second]

    def sweep(self, now: float) -> int:
        """Remove every key whose deadline fell in a second before ``now``'s;
        returns how many."""
        removed = 0
        end = int(now)
        buckets = self.buckets
        # Second by second since the last sweep: one step a second while
        # busy, a day's worth (86,400 steps, a few ms) after a quiet day.
        for second in range(self.swept_to, end):
            keys = buckets.pop(second, None)
            if keys:
                data, expires = self.data, self.expires
                for key in keys:
                    del data[key], expires[key]
                removed += len(keys)
        self.swept_to = max(self.swept_to, end)
        return removed


# The process-wide store: every connection of a server process shares it.
# Under the multi model each worker process has its own.
STORE = Store()

# name -> (handler, arity). Arity counts the command name, as Redis's does:
# N means exactly N arguments, -N at least N.
COMMANDS: dict[bytes, tuple[Callable, int]] = {}

# The fast path's dispatch: BY_ARGC[n] maps a command name, upper or lower
# case as clients send it, to its handler when n arguments are right for it,
# so one dict lookup replaces upper(), the lookup and the arity check. Names
# in other cases, and counts above FAST_ARGC, take _execute.
FAST_ARGC = 16
_NONE: dict[bytes, Callable] = {}
BY_ARGC: list[dict[bytes, Callable]] = (
    [{} for _ in range(FAST_ARGC + 1)] + [_NONE] * (1024 - FAST_ARGC))


def command(name: str, arity: int) -> Callable:
    def register(handler: Callable) -> Callable:
        COMMANDS[name.encode()] = (handler, arity)
        for n in range(1, FAST_ARGC + 1):
            if n == arity or -n <= arity < 0:
                BY_ARGC[n][name.encode()] = BY_ARGC[n][name.lower().encode()] = handler
        return handler
    return register


def to_int(data: bytes) -> int | None:
    """``data`` as a 64-bit integer written the way Redis writes one (no
    sign on zero, no leading zeros, spaces or underscores), else None."""
    try:
        n = int(data)
    except ValueError:
        return None
    if b"%d" % n != data or not INT64_MIN <= n <= INT64_MAX:
        return None
    return n


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _length_line(buf: bytes, pos: int, short: bytes, long: bytes) -> tuple[int, int] | None:
    """The number on the ``*N`` or ``$N`` line at ``pos``, and the offset after
    its CRLF; None while the line is incomplete. Raises ProtocolError, in
    Redis's words, for a line over MAX_LINE or a number that is not one."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        if len(buf) - pos > MAX_LINE:
            raise ProtocolError(b"too big %s count string" % short)
        return None
    try:
        return int(buf[pos + 1:nl]), nl + 2
    except ValueError:
        raise ProtocolError(b"invalid %s length" % long) from None


def printable(data: bytes) -> bytes:
    """Client bytes made safe to quote in a one-line error reply."""
    return data[:128].translate(None, b"\r\n")


class RespProtocol(Protocol):
    """One client connection. Instances share the class's ``store``; the
    CLI's factory is the class itself, so all use the process's STORE."""

    __slots__ = ("conn", "_write", "_pending", "_pending_size", "_need", "_args", "_left",
                 "_closing", "_null", "_proto", "_name", "_id")

    store = STORE
    _ids = itertools.count(1)

    def __init__(self) -> None:
        self._pending: list[bytes] = []   # the unparsed tail, and chunks after it
        self._pending_size = 0
        self._need = 0        # bytes _pending must reach before a parse can progress
        self._args: list[bytes] = []   # arguments of a half-received array...
        self._left = 0                 # ...and how many are still to come
        self._closing = False
        self._null = NULL_RESP2
        self._proto = 2
        self._name: bytes | None = None
        self._id = next(self._ids)

    def connection_made(self, conn: Connection) -> None:
        self.conn = conn
        self._write = conn.write

    # A client that pipelines without reading its replies would otherwise
    # grow our write buffer without bound: stop reading until it catches up.
    def pause_writing(self) -> None:
        self.conn.pause_reading()

    def resume_writing(self) -> None:
        self.conn.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return    # after QUIT or a protocol error, as Redis does
        store = self.store
        if store.buckets and monotonic() >= store.swept_to + 1:
            store.sweep(monotonic())   # at most once a second, and only with deadlines set
        if self._pending:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._need:
                return
            data = b"".join(self._pending)
            self._pending = []
        replies: list[bytes] = []
        try:
            pos = 0 if self._left else self._run_whole(data, replies)
            if pos < len(data) and not self._closing:
                pos = self._parse(data, pos, replies)
        except ProtocolError as exc:
            replies.append(b"-ERR Protocol error: %s\r\n" % exc.args[0])
            self._closing = True
        if replies:
            self._write(b"".join(replies))
        if self._closing:
            self.conn.close()   # sends the replies first
        elif pos < len(data):
            self._pending = [data[pos:]]
            self._pending_size = len(data) - pos

    def _run_whole(self, buf: bytes, replies: list[bytes]) -> int:
        """The fast path: execute the requests at the start of ``buf`` while
        each is whole and simple, appending the replies to ``replies``;
        return the offset of the first it leaves to _parse.

        Discussion: one ``split`` in C cuts a batch into its lines, so a
        request costs a slice of a list rather than a find, a slice and an
        int() per line. Whether the split lines up with the framing (every
        length header matches, no bulk string holds a CRLF) is checked in C
        by ``resp_scan``, which reports how many lines the whole, simple
        requests span; the rest (a request cut short, an inline command, a
        binary value, anything malformed) goes to _parse, which handles and
        reports every case."""
        scan = resp_scan(buf, len(buf))
        lines = scan.lines
        if not lines:
            return 0
        parts = buf.split(b"\r\n", lines)   # the rest stays one piece, never cut up
        execute = self._execute
        append = replies.append
        i = 0
        while i < lines:
            argc = ARGC[parts[i]]
            j = i + 1 + 2 * argc
            handler = BY_ARGC[argc].get(parts[i + 2])
            if handler is None:
                append(execute(parts[i + 2:j:2]))
            else:
                append(handler(self, parts[i + 2:j:2]))
            i = j
            if self._closing:
                return sum(map(len, parts[:i])) + 2 * i
        return scan.consumed

    def _parse(self, buf: bytes, pos: int, replies: list[bytes]) -> int:
        """Execute every whole request in ``buf`` from ``pos`` on, appending
        the replies to ``replies``, and keep the arguments of an array cut
        short; return the offset of the first unconsumed byte. Raises
        ProtocolError."""
        end = len(buf)
        find = buf.find
        execute = self._execute
        args, left = self._args, self._left
        self._need = 0    # unless a bulk string is cut short: any new byte helps
        while pos < end:
            if not left:
                if buf[pos] != 42:    # not b"*": an inline request, one line
                    nl = find(b"\n", pos)
                    if nl < 0:
                        if end - pos > MAX_LINE:
                            raise ProtocolError(b"too big inline request")
                        break
                    line = buf[pos:nl].split()   # whitespace: takes the \r too
                    pos = nl + 1
                    if line:
                        replies.append(execute(line))
                        if self._closing:
                            break
                    continue
                head = _length_line(buf, pos, b"mbulk", b"multibulk")
                if head is None:
                    break
                left, pos = head
                if left > MAX_ARGS:
                    raise ProtocolError(b"invalid multibulk length")
                if left <= 0:     # *0 and *-1 are skipped, as Redis does
                    left = 0
                    continue
                args = []
                continue
            if buf[pos] != 36:    # b"$"
                raise ProtocolError(b"expected '$' before a bulk string")
            head = _length_line(buf, pos, b"bulk", b"bulk")
            if head is None:
                break
            size, start = head
            if not 0 <= size <= MAX_BULK:
                raise ProtocolError(b"invalid bulk length")
            stop = start + size
            if stop + 2 > end:
                self._need = stop + 2 - pos
                break
            if buf[stop] != 13 or buf[stop + 1] != 10:
                raise ProtocolError(b"expected CRLF after a bulk string")
            args.append(buf[start:stop])
            pos = stop + 2
            left -= 1
            if not left:
                replies.append(execute(args))
                if self._closing:
                    break
        self._args, self._left = args, left
        return pos

    def _execute(self, args: list[bytes]) -> bytes:
        entry = COMMANDS.get(args[0].upper())
        if entry is None:
            return b"-ERR unknown command '%s'\r\n" % printable(args[0])
        handler, arity = entry
        n = len(args)
        if n != arity and (arity > 0 or n < -arity):
            return b"-ERR wrong number of arguments for '%s' command\r\n" % args[0].lower()
        return handler(self, args)

    # -- commands: each takes the request's arguments, returns the reply ----

    @command("PING", -1)
    def _ping(self, args: list[bytes]) -> bytes:
        if len(args) > 2:
            return b"-ERR wrong number of arguments for 'ping' command\r\n"
        return bulk(args[1]) if len(args) == 2 else b"+PONG\r\n"

    @command("ECHO", 2)
    def _echo(self, args: list[bytes]) -> bytes:
        return bulk(args[1])

    @command("GET", 2)
    def _get(self, args: list[bytes]) -> bytes:
        value = self.store.get(args[1])
        return self._null if value is None else b"$%d\r\n%s\r\n" % (len(value), value)

    @command("SET", -3)
    def _set(self, args: list[bytes]) -> bytes:
        # SET key value [NX | XX] [EX seconds | PX milliseconds]
        deadline = condition = None
        i = 3
        while i < len(args):
            option = args[i].upper()
            if option in (b"NX", b"XX") and condition is None:
                condition = option
                i += 1
            elif option in (b"EX", b"PX") and deadline is None and i + 1 < len(args):
                ttl = to_int(args[i + 1])
                if ttl is None:
                    return NOT_INTEGER
                if ttl <= 0:
                    return b"-ERR invalid expire time in 'set' command\r\n"
                deadline = monotonic() + (ttl if option == b"EX" else ttl / 1000)
                i += 2
            else:
                return SYNTAX_ERROR
        if condition is not None and (self.store.get(args[1]) is None) != (condition == b"NX"):
            return self._null    # NX and the key exists, or XX and it does not
        self.store.set(args[1], args[2], deadline)
        return OK

    @command("DEL", -2)
    def _del(self, args: list[bytes]) -> bytes:
        delete = self.store.delete
        return b":%d\r\n" % sum(delete(key) for key in args[1:])

    @command("EXISTS", -2)
    def _exists(self, args: list[bytes]) -> bytes:
        get = self.store.get
        return b":%d\r\n" % sum(get(key) is not None for key in args[1:])

    @command("INCR", 2)
    def _incr(self, args: list[bytes]) -> bytes:
        return self._add(args[1], 1)

    @command("INCRBY", 3)   # redis-py's incr() sends INCRBY key 1
    def _incrby(self, args: list[bytes]) -> bytes:
        delta = to_int(args[2])
        return NOT_INTEGER if delta is None else self._add(args[1], delta)

    def _add(self, key: bytes, delta: int) -> bytes:
        value = self.store.get(key)
        n = 0 if value is None else to_int(value)
        if n is None:
            return NOT_INTEGER
        n += delta
        if not INT64_MIN <= n <= INT64_MAX:
            return b"-ERR increment or decrement would overflow\r\n"
        self.store.update(key, b"%d" % n)
        return b":%d\r\n" % n

    @command("MGET", -2)
    def _mget(self, args: list[bytes]) -> bytes:
        get, null = self.store.get, self._null
        values = [get(key) for key in args[1:]]
        return b"*%d\r\n" % len(values) + b"".join(
            null if value is None else bulk(value) for value in values)

    @command("MSET", -3)
    def _mset(self, args: list[bytes]) -> bytes:
        if len(args) % 2 == 0:
            return b"-ERR wrong number of arguments for 'mset' command\r\n"
        set_ = self.store.set
        for i in range(1, len(args), 2):
            set_(args[i], args[i + 1])
        return OK

    @command("QUIT", -1)
    def _quit(self, args: list[bytes]) -> bytes:
        self._closing = True    # data_received closes once the reply is written
        return OK

    @command("COMMAND", -1)
    def _command(self, args: list[bytes]) -> bytes:
        # redis-cli asks for COMMAND DOCS to show hints and copes with none.
        return EMPTY_ARRAY

    @command("CONFIG", -2)
    def _config(self, args: list[bytes]) -> bytes:
        # Nothing is configurable, but redis-benchmark reads CONFIG GET save
        # and appendonly on start and warns without them: report the truth,
        # that nothing is persisted.
        if args[1].upper() != b"GET" or len(args) < 3:
            return b"-ERR unknown subcommand or wrong number of arguments for '%s'\r\n" % (
                printable(args[1]))
        found = [(name, PARAMETERS[name]) for name in map(bytes.lower, args[2:])
                 if name in PARAMETERS]
        return b"*%d\r\n" % (2 * len(found)) + b"".join(
            bulk(name) + bulk(value) for name, value in found)

    @command("CLIENT", -2)
    def _client(self, args: list[bytes]) -> bytes:
        # Clients announce themselves on connect (redis-py: CLIENT SETINFO).
        sub = args[1].upper()
        if sub == b"SETINFO" and len(args) == 4:
            return OK
        if sub == b"SETNAME" and len(args) == 3:
            return self._set_name(args[2])
        if sub == b"GETNAME" and len(args) == 2:
            return self._null if self._name is None else bulk(self._name)
        if sub == b"ID" and len(args) == 2:
            return b":%d\r\n" % self._id
        return b"-ERR unknown subcommand or wrong number of arguments for '%s'\r\n" % (
            printable(args[1]))

    def _set_name(self, name: bytes) -> bytes:
        if any(c <= 32 or c >= 127 for c in name):
            return b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
        self._name = name or None
        return OK

    @command("HELLO", -1)
    def _hello(self, args: list[bytes]) -> bytes:
        # HELLO [protover [SETNAME name]]: redis-py 8 opens with HELLO 3.
        proto = self._proto
        if len(args) > 1:
            asked = to_int(args[1])
            if asked not in (2, 3):
                return b"-NOPROTO unsupported protocol version\r\n"
            proto = asked
        options = args[2:]
        if options:
            if len(options) != 2 or options[0].upper() != b"SETNAME":
                return SYNTAX_ERROR   # AUTH too: this server has no passwords
            reply = self._set_name(options[1])
            if reply is not OK:
                return reply
        self._proto = proto
        self._null = NULL_RESP3 if proto == 3 else NULL_RESP2
        fields = ((b"server", bulk(b"uringio")), (b"version", bulk(__version__.encode())),
                  (b"proto", b":%d\r\n" % proto), (b"id", b":%d\r\n" % self._id),
                  (b"mode", bulk(b"standalone")), (b"role", bulk(b"master")),
                  (b"modules", EMPTY_ARRAY))
        # RESP3 has maps; RESP2 writes one as a flat array of keys and values.
        head = b"%%%d\r\n" % len(fields) if proto == 3 else b"*%d\r\n" % (2 * len(fields))
        return head + b"".join(bulk(name) + value for name, value in fields)


def resp_factory(store: Store | None = None) -> type[RespProtocol]:
    """A RespProtocol class whose connections share ``store`` (a new, empty
    one by default) instead of the process's STORE."""
    return type("RespProtocol", (RespProtocol,), {"store": Store() if store is None else store,
                                                   "__slots__": ()})
