"""The Autobahn|Testsuite's cases of sections 1-7 and 10 (framing,
pings/pongs, reserved bits, opcodes, fragmentation, UTF-8, close handling,
auto-fragmentation), reproduced against ``serve asgi`` with an echo app
(tests/apps/conformance_app.py) on both backends, by a small raw-socket
client of this file's own (masking, fragments, control frames, chopped
writes, close codes).

Each case is Autobahn's (autobahntestsuite/case/caseN_M.py, by the number
in its test id): what the fuzzer sends, the events it expects back (OK,
or NON-STRICT where Autobahn allows it, INFORMATIONAL where it only
reports), and how the close must go -- who closes first, with which codes,
cleanly or not -- judged as Autobahn's Case.onConnectionLost judges it.
Timeouts are shorter than Autobahn's (they only bound a failure). Every
case of those sections is here, the 132 UTF-8 cases of 6.5-6.23 in one
test per group (docs/conformance.md says what came of them).

Also here, the WebSocket advisories of tests/test_vectors.py's (c): a
permessage-deflate frame that inflates past --ws-max-size, and handshakes
with bytes wsproto cannot read (granian's CVE-2026-42544).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import pytest

import conftest
from conftest import REPO, proc_status, start_server, stop_server

APPS = os.path.join(REPO, "tests", "apps")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Opcodes (RFC 6455 §5.2).
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

OK, NON_STRICT, INFORMATIONAL = "OK", "NON-STRICT", "INFORMATIONAL"


def _start(backend: str, *args: str):
    return start_server(["-m", "uringio", "serve", "asgi", "conformance_app:app", "--app-dir",
                         APPS, "--port", "0", "--drain-timeout", "1", *args], backend)


def _stop_quietly(proc) -> str:
    assert stop_server(proc) == 0
    log = proc.stderr.read()
    assert "Traceback" not in log and "ERROR" not in log, log
    return log


@pytest.fixture(scope="module", params=conftest.BACKENDS)
def port(request):
    """One echo server per backend for the module's cases."""
    if request.param == "uring":
        conftest.skip_unless_uring()
    proc, port = _start(request.param)
    yield port
    _stop_quietly(proc)


# -- the client ---------------------------------------------------------------------------

def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
          mask: bool = True) -> bytes:
    """One frame as a client sends it (RFC 6455 §5.2): masked, with the
    length in the shortest form."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


class Client:
    """A WebSocket client on a raw socket, which sends what it is told to,
    however wrong, and records what comes back as Autobahn's fuzzer does:
    messages, pings and pongs in order, the close frame, who closed first."""

    def __init__(self, port: int, extensions: bytes | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: %s\r\n%s\r\n" % (
                              key, b"Sec-WebSocket-Extensions: %s\r\n" % extensions
                              if extensions else b""))
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the handshake: {self.buffer!r}"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.headers = {name.strip().lower(): value.strip() for name, _, value in
                        (line.partition(b":") for line in head.split(b"\r\n")[1:])}
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert self.headers[b"sec-websocket-accept"] == accept, head
        self.compressed = b"permessage-deflate" in self.headers.get(
            b"sec-websocket-extensions", b"")
        self.received: list[tuple] = []
        self.fragments: list[bytes] = []
        self.fragment_opcode: int | None = None
        self.sent_close = False       # we sent a close frame (before theirs)
        self.close_code: int | None = None
        self.got_close = False        # their close frame came
        self.closed_by_me: bool | None = None
        self.eof = False              # the server closed the TCP connection

    # sending

    def send(self, data: bytes, chop: int | None = None) -> bool:
        """Send ``data`` (in writes of ``chop`` bytes); False if the server
        had closed already."""
        try:
            if chop is None:
                self.sock.sendall(data)
            else:
                for at in range(0, len(data), chop):
                    self.sock.sendall(data[at:at + chop])
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        if not self.got_close and self.closed_by_me is None:
            self.closed_by_me = True
        self.sent_close = True
        self.send(close_frame(code, reason))

    # receiving

    def _read(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _frame(self) -> tuple[bool, int, int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        fin, rsv, opcode = data[0] >> 7, (data[0] >> 4) & 7, data[0] & 15
        assert not data[1] & 0x80, "a server's frame is never masked (RFC 6455 §5.1)"
        size, at = data[1] & 0x7F, 2
        if size == 126:
            if len(data) < 4:
                return None
            size, at = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            if len(data) < 10:
                return None
            size, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + size:
            return None
        self.buffer = data[at + size:]
        return bool(fin), rsv, opcode, data[at:at + size]

    def _take(self, fin: bool, rsv: int, opcode: int, payload: bytes) -> None:
        assert rsv == 0 or self.compressed, "no extension was agreed"
        if opcode == CLOSE:
            if not self.got_close:
                self.got_close = True
                if self.closed_by_me is None:
                    self.closed_by_me = False
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else None
                if not self.sent_close:
                    self.sent_close = True   # the reply Autobahn sends
                    self.send(close_frame(self.close_code))
        elif opcode == PING:
            self.received.append(("ping", payload))
        elif opcode == PONG:
            self.received.append(("pong", payload))
        else:
            if opcode != CONT:
                self.fragment_opcode = opcode
            self.fragments.append(payload)
            if fin:
                self.received.append(("message", b"".join(self.fragments),
                                      self.fragment_opcode == BINARY))
                self.fragments = []

    def pump(self, timeout: float) -> None:
        """Read and take frames for up to ``timeout`` seconds, or until the
        server closes."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            while (taken := self._frame()) is not None:
                self._take(*taken)
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                break
        while (taken := self._frame()) is not None:
            self._take(*taken)

    def open(self) -> bool:
        return not self.eof and not self.got_close

    def close(self) -> None:
        self.sock.close()


# -- the cases ----------------------------------------------------------------------------

@dataclass
class Case:
    """One Autobahn case: what is sent, and what may come back."""
    id: str
    send: list                          # bytes, (bytes, chop), ("wait", label, s), ("close", ...)
    expected: dict[str, list]           # OK / NON-STRICT / INFORMATIONAL -> events
    closed_by_me: bool                  # the fuzzer closes (True) or the server fails it
    close_codes: tuple[int, ...] = (1000,)
    require_clean: bool = True
    informational: bool = False


def msg(payload, binary: bool = False) -> tuple:
    return ("message", payload.encode() if isinstance(payload, str) else payload, binary)


def echo(case_id: str, payload, binary: bool = False, chop: int | None = None) -> Case:
    data = payload.encode() if isinstance(payload, str) else payload
    sent = frame(BINARY if binary else TEXT, data)
    return Case(case_id, [(sent, chop) if chop else sent], {OK: [msg(data, binary)]}, True)


def fails(case_id: str, send: list, code: int = 1002, non_strict: list | None = None,
          ok: list | None = None) -> Case:
    """The server must fail the connection: its close first, with ``code``."""
    expected = {OK: ok or []}
    if non_strict is not None:
        expected[NON_STRICT] = non_strict
    return Case(case_id, send, expected, False, (code,), require_clean=False)


HELLO = b"Hello, world!"
PINGS = [b"payload-%d" % i for i in range(10)]


def _cases_1() -> list[Case]:
    sizes = [0, 125, 126, 127, 128, 65535, 65536, 65536]
    cases = []
    for i, size in enumerate(sizes, 1):   # 1.1.8 / 1.2.8: sent in chops of 997 octets
        chop = 997 if i == 8 else None
        cases.append(echo(f"1.1.{i}", b"*" * size, chop=chop))
        cases.append(echo(f"1.2.{i}", b"\xfe" * size, binary=True, chop=chop))
    return cases


def _cases_2() -> list[Case]:
    ping = lambda payload: frame(PING, payload)   # noqa: E731
    return [
        Case("2.1", [ping(b"")], {OK: [("pong", b"")]}, True),
        Case("2.2", [ping(HELLO)], {OK: [("pong", HELLO)]}, True),
        Case("2.3", [ping(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")],
             {OK: [("pong", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")]}, True),
        Case("2.4", [ping(b"\xfe" * 125)], {OK: [("pong", b"\xfe" * 125)]}, True),
        fails("2.5", [ping(b"\xfe" * 126)]),
        Case("2.6", [(ping(b"\xfe" * 125), 1)], {OK: [("pong", b"\xfe" * 125)]}, True),
        Case("2.7", [frame(PONG)], {OK: []}, True),
        Case("2.8", [frame(PONG, b"unsolicited pong payload")], {OK: []}, True),
        Case("2.9", [frame(PONG, b"unsolicited pong payload"), ping(b"ping payload")],
             {OK: [("pong", b"ping payload")]}, True),
        Case("2.10", [b"".join(ping(p) for p in PINGS)], {OK: [("pong", p) for p in PINGS]},
             True),
        Case("2.11", [(b"".join(ping(p) for p in PINGS), 1)],
             {OK: [("pong", p) for p in PINGS]}, True),
    ]


def _after_text(case_id: str, bad: bytes, chop: int | None = None,
                framewise: bool = False) -> Case:
    """A text message, then ``bad``, then a ping: the echo (OK) or nothing
    (NON-STRICT: the bad frame failed the connection first), never a pong."""
    parts = [frame(TEXT, HELLO), bad, frame(PING)]
    send = [(p, 1) for p in parts] if chop else (parts if framewise else [b"".join(parts)])
    return fails(case_id, send, ok=[msg(HELLO)], non_strict=[])


def _cases_3() -> list[Case]:
    return [
        fails("3.1", [frame(TEXT, HELLO, rsv=1)]),
        _after_text("3.2", frame(TEXT, HELLO, rsv=2)),
        _after_text("3.3", frame(TEXT, HELLO, rsv=3), framewise=True),
        _after_text("3.4", frame(TEXT, HELLO, rsv=4), chop=1),
        fails("3.5", [frame(BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)]),
        fails("3.6", [frame(PING, HELLO, rsv=6)]),
        fails("3.7", [frame(CLOSE, b"", rsv=7)]),
    ]


def _cases_4() -> list[Case]:
    cases = []
    for group, first in (("4.1", 3), ("4.2", 11)):   # reserved non-control, control opcodes
        payload = b"reserved opcode payload"
        cases += [
            fails(f"{group}.1", [frame(first)]),
            fails(f"{group}.2", [frame(first + 1, payload)]),
            _after_text(f"{group}.3", frame(first + 2)),
            _after_text(f"{group}.4", frame(first + 3, payload)),
            _after_text(f"{group}.5", frame(first + 4, payload), chop=1),
        ]
    return cases


def _fragmented(case_id: str, frames: list[bytes], expected: list, variant: str,
                fail: bool = False, non_strict: list | None = None) -> Case:
    """``frames`` sent together, frame by frame ("sync"), or octet by
    octet ("chop")."""
    if variant == "sync":
        send = list(frames)
    elif variant == "chop":
        send = [(b"".join(frames), 1)]
    else:
        send = [b"".join(frames)]
    if fail:
        return fails(case_id, send, ok=expected, non_strict=non_strict)
    return Case(case_id, send, {OK: expected}, True)


def _cases_5() -> list[Case]:
    f1, f2 = b"fragment1", b"fragment2"
    text2 = [frame(TEXT, f1, fin=False), frame(CONT, f2)]
    with_ping = [frame(TEXT, f1, fin=False), frame(PING, b"ping payload"), frame(CONT, f2)]
    cont_fin = [frame(CONT, b"non-continuation payload")] + text2
    cont_nofin = [frame(CONT, b"non-continuation payload", fin=False)] + text2
    variants = ("bulk", "sync", "chop")
    cases = [
        fails("5.1", [frame(PING, f1, fin=False) + frame(CONT, f2)]),
        fails("5.2", [frame(PONG, f1, fin=False) + frame(CONT, f2)]),
    ]
    for n, variant in zip((3, 4, 5), variants, strict=True):
        cases.append(_fragmented(f"5.{n}", text2, [msg(f1 + f2)], variant))
    for n, variant in zip((6, 7, 8), variants, strict=True):
        cases.append(_fragmented(f"5.{n}", with_ping, [("pong", b"ping payload"),
                                                       msg(f1 + f2)], variant))
    for n, variant in zip((9, 10, 11), variants, strict=True):
        cases.append(_fragmented(f"5.{n}", cont_fin, [], variant, fail=True))
    for n, variant in zip((12, 13, 14), variants, strict=True):
        cases.append(_fragmented(f"5.{n}", cont_nofin, [], variant, fail=True))
    cases.append(fails("5.15", [b"".join([
        frame(TEXT, f1, fin=False), frame(CONT, f2), frame(CONT, b"fragment3", fin=False),
        frame(TEXT, b"fragment4")])], ok=[msg(f1 + f2)], non_strict=[]))
    twice = lambda fin: [frame(CONT, f1, fin=fin), frame(TEXT, f2, fin=False),   # noqa: E731
                         frame(CONT, b"fragment3")] * 2
    cases.append(fails("5.16", [b"".join(twice(False))]))
    cases.append(fails("5.17", [b"".join(twice(True))]))
    cases.append(fails("5.18", [frame(TEXT, f1, fin=False) + frame(TEXT, f2)]))
    five = [b"fragment%d" % i for i in range(1, 6)]
    first = [frame(TEXT, five[0], fin=False), frame(CONT, five[1], fin=False),
             frame(PING, b"pongme 1!")]
    second = [frame(CONT, five[2], fin=False), frame(CONT, five[3], fin=False),
              frame(PING, b"pongme 2!"), frame(CONT, five[4])]
    expected = [("pong", b"pongme 1!"), ("pong", b"pongme 2!"), msg(b"".join(five))]
    cases.append(Case("5.19", [b"".join(first), ("wait", None, 0.3), b"".join(second)],
                      {OK: expected}, True))
    cases.append(Case("5.20", first + [("wait", None, 0.3)] + second, {OK: expected}, True))
    return cases


KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"   # "κόσμε", as Autobahn writes it
HELLO_UTF8 = "Hello-µ@ßöäüàá-UTF-8!!".encode()
CUT = len("Hello-µ@ß".encode())   # 6.2.2's cut, between two code points
# Autobahn's 6.3 and 6.4 payload: valid, then 0xF4 0x90 (past U+10FFFF).
PART1, PART2, PART3 = KOSME, b"\xf4\x90\x80\x80", b"\x65\x64\x69\x74\x65\x64"
INVALID = KOSME + b"\xed\xa0\x80" + b"\x65\x64\x69\x74\x65\x64"


def _per_octet(payload: bytes) -> list[bytes]:
    """A text message of one frame per octet of ``payload``."""
    return [frame(TEXT if i == 0 else CONT, payload[i:i + 1], fin=i == len(payload) - 1)
            for i in range(len(payload))]


def _fail_fast(case_id: str, first: list[bytes], second: list[bytes],
               third: list[bytes]) -> Case:
    """Autobahn 6.4.x: the connection must be failed when the part that
    makes the payload invalid arrives (OK), or at least at its end
    (NON-STRICT)."""
    return Case(case_id, first + [("wait", "A", 0.3)] + second + [("wait", "B", 0.3)] + third,
                {OK: [("timeout", "A")], NON_STRICT: [("timeout", "A"), ("timeout", "B")]},
                False, (1007,), require_clean=False)


def _in_one_frame_chopped(payload: bytes, cuts: tuple[int, int]) -> tuple[list, list, list]:
    """One text frame, its bytes sent in three writes cut at ``cuts``."""
    whole = frame(TEXT, payload)
    head = len(whole) - len(payload)
    a, b = head + cuts[0], head + cuts[1]
    return [whole[:a]], [whole[a:b]], [whole[b:]]


def _cases_6() -> list[Case]:
    p = PART1 + PART2 + PART3
    cases = [
        echo("6.1.1", b""),
        Case("6.1.2", [frame(TEXT, b"", fin=False) + frame(CONT, b"", fin=False)
                       + frame(CONT, b"")], {OK: [msg(b"")]}, True),
        Case("6.1.3", [frame(TEXT, b"", fin=False) + frame(CONT, b"middle frame payload",
                                                           fin=False) + frame(CONT, b"")],
             {OK: [msg(b"middle frame payload")]}, True),
        echo("6.2.1", HELLO_UTF8),
        Case("6.2.2", [frame(TEXT, HELLO_UTF8[:CUT], fin=False) + frame(CONT, HELLO_UTF8[CUT:])],
             {OK: [msg(HELLO_UTF8)]}, True),
        Case("6.2.3", [b"".join(_per_octet(HELLO_UTF8))], {OK: [msg(HELLO_UTF8)]}, True),
        Case("6.2.4", [b"".join(_per_octet(KOSME))], {OK: [msg(KOSME)]}, True),
        fails("6.3.1", [frame(TEXT, INVALID)], code=1007),
        fails("6.3.2", [b"".join(_per_octet(INVALID))], code=1007),
        _fail_fast("6.4.1", [frame(TEXT, PART1, fin=False)], [frame(CONT, PART2, fin=False)],
                   [frame(CONT, PART3)]),
        _fail_fast("6.4.2", [frame(TEXT, p[:12], fin=False)], [frame(CONT, p[12:13], fin=False)],
                   [frame(CONT, p[13:])]),
        _fail_fast("6.4.3", *_in_one_frame_chopped(p, (len(PART1), len(PART1) + len(PART2)))),
        _fail_fast("6.4.4", *_in_one_frame_chopped(p, (12, 13))),
    ]
    return cases


def utf8_groups() -> dict[str, list[tuple[bool, bytes]]]:
    """Autobahn's 6.5-6.23 (case6_x_x.py, from Markus Kuhn's UTF-8 decoder
    capability test): per group, (valid, payload) for each case."""
    kosme = KOSME
    lonely = [bytes(b for i in range(lo, hi) for b in (i, 0x20))
              for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb),
                             (0xfc, 0xfd))]
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80",
               b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf",
               b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    noncharacters = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in b"\xf0\xf1\xf2\xf3\xf4":
        for z2 in b"\x8f\x9f\xaf\xbf":
            if z1 == 0xf4 and z2 != 0x8f:
                continue   # past U+10FFFF
            for z3 in b"\xbe\xbf":
                zz = bytes([z1, z2, 0xbf, z3])
                if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):   # overlong
                    noncharacters.append(zz)

    def valid(payload: bytes) -> bool:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    groups = {
        "6.5": [b"hello\x24world", b"hello\xc2\xa2world", b"hello\xe2\x82\xacworld",
                b"hello\xf0\xa4\xad\xa2world", kosme],
        "6.6": [kosme[:i] for i in range(1, len(kosme) + 1)],
        "6.7": [b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"],
        "6.8": [b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"],
        "6.9": [b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"],
        "6.10": [b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf\xbf"],
        "6.11": [b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf",
                 b"\xf4\x90\x80\x80"],
        "6.12": [b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf",
                 b"\x80\xbf\x80\xbf\x80", b"\x80\xbf\x80\xbf\x80\xbf", bytes(range(0x80, 0xbf))],
        "6.13": lonely,
        "6.14": missing,
        "6.15": [b"".join(missing)],
        "6.16": [b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"],
        "6.17": [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf",
                 b"\xfc\x80\x80\x80\x80\xaf"],
        "6.18": [b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf8\x87\xbf\xbf\xbf",
                 b"\xfc\x83\xbf\xbf\xbf\xbf"],
        "6.19": [b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf8\x80\x80\x80\x80",
                 b"\xfc\x80\x80\x80\x80\x80"],
        "6.20": [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
                 b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"],
        "6.21": [a + b for a in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80",
                                 b"\xed\xaf\xbf") for b in (b"\xed\xb0\x80", b"\xed\xbf\xbf")],
        "6.22": noncharacters,
        "6.23": [b"\xef\xbf\xb9", b"\xef\xbf\xba", b"\xef\xbf\xbb", b"\xef\xbf\xbc",
                 b"\xef\xbf\xbd", b"\xef\xbf\xbe", b"\xef\xbf\xbf"],
    }
    return {group: [(valid(p), p) for p in payloads] for group, payloads in groups.items()}


def _utf8_case(case_id: str, is_valid: bool, payload: bytes) -> Case:
    if is_valid:
        return echo(case_id, payload)
    return fails(case_id, [frame(TEXT, payload)], code=1007)


def _cases_7() -> list[Case]:
    hello = b"Hello World!"
    cases = [
        Case("7.1.1", [frame(TEXT, hello)], {OK: [msg(hello)]}, True),
        Case("7.1.2", [("close", 1000, b""), close_frame(1000)], {OK: []}, True),
        Case("7.1.3", [("close", 1000, b""), frame(PING, hello)], {OK: []}, True),
        Case("7.1.4", [("close", 1000, b""), frame(TEXT, hello)], {OK: []}, True),
        Case("7.1.5", [frame(TEXT, b"fragment1", fin=False), ("close", 1000, b""),
                       frame(CONT, b"fragment2")], {OK: []}, True),
        Case("7.1.6", [frame(TEXT, b"BAsd7&jh23" * (256 * 1024 // 10)), frame(TEXT, hello),
                       ("close", 1000, b""), frame(PING)],
             {OK: [msg(hello)], NON_STRICT: []}, True, informational=True),
        Case("7.3.1", [("close", None, b"")], {OK: []}, True),
        Case("7.3.2", [("close-raw", b"a")], {OK: []}, True, (1002,), require_clean=False),
        Case("7.3.3", [("close", 1000, b"")], {OK: []}, True),
        Case("7.3.4", [("close", 1000, b"Hello World!")], {OK: []}, True),
        Case("7.3.5", [("close", 1000, b"*" * 123)], {OK: []}, True),
        Case("7.3.6", [("close", 1000, b"*" * 124)], {OK: []}, True, (1002,),
             require_clean=False),
        Case("7.5.1", [("close", 1000, INVALID)], {OK: []}, True, (1002, 1007),
             require_clean=False),
    ]
    for i, code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
                              4000, 4999], 1):
        cases.append(Case(f"7.7.{i}", [("close", code, b"")], {OK: []}, True, (1000, code)))
    for i, code in enumerate([0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999], 1):
        cases.append(Case(f"7.9.{i}", [("close", code, b"")], {OK: []}, True, (1002,),
                          require_clean=False))
    for case_id, code in (("7.13.1", 5000), ("7.13.2", 65535)):
        cases.append(Case(case_id, [("close", code, b"")], {OK: []}, True, (1000, code, 1002),
                          require_clean=False, informational=True))
    return cases


def _cases_10() -> list[Case]:
    payload = b"*" * 65536   # auto-fragmented into frames of 1300 octets
    pieces = [payload[at:at + 1300] for at in range(0, len(payload), 1300)]
    frames = [frame(TEXT if i == 0 else CONT, piece, fin=i == len(pieces) - 1)
              for i, piece in enumerate(pieces)]
    return [Case("10.1.1", [b"".join(frames)], {OK: [msg(payload)]}, True)]


CASES = _cases_1() + _cases_2() + _cases_3() + _cases_4() + _cases_5() + _cases_6() + \
    _cases_7() + _cases_10()


# -- running a case, judged as Autobahn judges it ---------------------------------------------

@dataclass
class Outcome:
    behavior: str
    close_behavior: str
    received: list = field(default_factory=list)
    close_code: int | None = None


def run(port: int, case: Case, timeout: float = 3.0) -> Outcome:
    """Run ``case``; its behaviour (OK, NON-STRICT, INFORMATIONAL or
    FAILED) and its closing behaviour (OK, or what went wrong)."""
    client = Client(port)
    try:
        received = client.received
        for step in case.send:
            if not client.open():
                break
            if isinstance(step, bytes):
                client.send(step)
            elif step[0] == "wait":
                client.pump(step[2])
                if step[1] is not None and client.open():
                    received.append(("timeout", step[1]))
            elif step[0] == "close":
                client.send_close(step[1], step[2])
            elif step[0] == "close-raw":   # a close frame of any payload
                client.closed_by_me = True
                client.sent_close = True
                client.send(frame(CLOSE, step[1]))
            else:
                client.send(*step)
        # Read until the events match an expectation (then the fuzzer
        # closes, where the case says it does) or the server closes.
        deadline = time.monotonic() + timeout
        while client.open() and time.monotonic() < deadline:
            if case.closed_by_me and not client.sent_close and \
                    any(received == events for events in case.expected.values()):
                client.send_close(case.close_codes[0])
            client.pump(0.05 if not client.sent_close else deadline - time.monotonic())
        if not client.eof:
            client.pump(max(0.0, deadline - time.monotonic()))   # the server closes TCP
        behavior = next((name for name, events in case.expected.items() if received == events),
                        "FAILED")
        if case.closed_by_me != bool(client.closed_by_me):
            close_behavior = "FAILED (closed by the wrong endpoint)"
        elif case.require_clean and not (client.got_close and client.eof):
            close_behavior = "UNCLEAN"
        elif client.close_code is not None and client.close_code not in case.close_codes:
            close_behavior = f"WRONG CODE {client.close_code}"
        elif not client.eof:
            close_behavior = "FAILED (the server never closed the connection)"
        else:
            close_behavior = OK
        return Outcome(behavior, close_behavior, received, client.close_code)
    finally:
        client.close()


def _case_param(case: Case):
    return pytest.param(case, id=case.id)


@pytest.mark.parametrize("case", [_case_param(c) for c in CASES])
def test_autobahn_case(port, case: Case):
    outcome = run(port, case)
    if case.informational:
        # INFORMATIONAL: Autobahn passes any outcome and reports it (7.1.6:
        # whether the echoes came before the close, which here depends on
        # when the app runs); the server must still end the connection.
        assert "never closed" not in outcome.close_behavior, outcome
        return
    assert outcome.behavior in (OK, NON_STRICT), outcome
    assert outcome.close_behavior == OK, outcome


UTF8 = utf8_groups()


@pytest.mark.parametrize("group", sorted(UTF8, key=lambda g: int(g.split(".")[1])))
def test_autobahn_utf8_group(port, group):
    """Autobahn 6.5-6.23: every case of the group, each a text message of
    one frame whose payload is valid UTF-8 (echoed) or not (the connection
    failed with 1007)."""
    failures = []
    for i, (is_valid, payload) in enumerate(UTF8[group], 1):
        case = _utf8_case(f"{group}.{i}", is_valid, payload)
        outcome = run(port, case)
        if outcome.behavior not in (OK, NON_STRICT) or outcome.close_behavior != OK:
            failures.append((case.id, payload, outcome))
    assert not failures, failures


def test_every_case_group_of_sections_1_to_7_and_10_is_here():
    """Autobahn's groups (its case numbers but the last): each has a case here."""
    groups = {c.id.rsplit(".", 1)[0] if c.id.count(".") == 2 else c.id for c in CASES}
    groups |= set(UTF8)
    wanted = {"1.1", "1.2", *(f"2.{i}" for i in range(1, 12)), *(f"3.{i}" for i in range(1, 8)),
              "4.1", "4.2", *(f"5.{i}" for i in range(1, 21)), "6.1", "6.2", "6.3", "6.4",
              *(f"6.{i}" for i in range(5, 24)), "7.1", "7.3", "7.5", "7.7", "7.9", "7.13",
              "10.1"}
    assert wanted <= groups, sorted(wanted - groups)


# -- advisories: a decompression bomb, handshakes with unreadable bytes ------------------------

def deflated(data: bytes) -> bytes:
    """``data`` as one permessage-deflate message's payload (RFC 7692 §7.2.1:
    raw DEFLATE, flushed, its final 0x00 0x00 0xff 0xff dropped)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    return payload[:-4]


MAX_SIZE = 64 * 1024
BOMB = 64 * 1024 * 1024   # inflates to 1024 times the limit; about 64 KiB on the wire


def test_a_compressed_message_past_the_limit_is_refused_before_it_is_inflated(backend):
    """A permessage-deflate frame of about 64 KiB that inflates to 64 MiB,
    to a server whose messages may be 64 KiB: closed with 1009, having
    inflated not much more than the limit -- its peak memory grows by less
    than 16 MiB (a few times the limit, and the buffers of the read), and
    the close comes within a second."""
    proc, port = _start(backend, "--ws-max-size", str(MAX_SIZE))
    try:
        client = Client(port, extensions=b"permessage-deflate")
        assert client.compressed, client.headers
        payload = deflated(b"a" * BOMB)
        peak = proc_status(proc.pid, "VmHWM")
        started = time.monotonic()
        client.send(frame(TEXT, payload, rsv=4))   # RSV1: compressed
        client.pump(5.0)
        took = time.monotonic() - started
        growth = proc_status(proc.pid, "VmHWM") - peak
        client.close()
    finally:
        _stop_quietly(proc)
    assert client.close_code == 1009
    assert growth < 16 * 1024, f"peak memory grew by {growth} KiB for a {MAX_SIZE} byte limit"
    assert took < 1.0, f"{took:.2f} s to refuse it"


def _receive_then_close(client: Client, messages: int) -> None:
    """Take frames until ``messages`` have come back (5 s at most), then
    close the connection as a client does."""
    deadline = time.monotonic() + 5
    while len(client.received) < messages and client.open() and time.monotonic() < deadline:
        client.pump(0.1)
    client.send_close()
    client.pump(2.0)
    client.close()


def test_a_compressed_message_within_the_limit_is_echoed(backend):
    """The other side of the test above: permessage-deflate works, a
    message that inflates to the limit is taken."""
    proc, port = _start(backend, "--ws-max-size", str(MAX_SIZE))
    try:
        client = Client(port, extensions=b"permessage-deflate")
        client.send(frame(TEXT, deflated(b"a" * MAX_SIZE), rsv=4))
        _receive_then_close(client, 1)
    finally:
        _stop_quietly(proc)
    assert len(client.received) == 1 and client.received[0][0] == "message"


def test_the_limit_on_a_compressed_message_is_per_message(backend):
    """Two messages that each inflate to exactly the limit, the second
    in two frames: both are taken and echoed whole (what the first
    inflated does not count against the second)."""
    first, second = b"a" * MAX_SIZE, bytes(range(256)) * (MAX_SIZE // 256)
    proc, port = _start(backend, "--ws-max-size", str(MAX_SIZE))
    try:
        # server_no_context_takeover: each echo inflates on its own.
        client = Client(port, extensions=b"permessage-deflate; server_no_context_takeover")
        assert client.compressed, client.headers
        client.send(frame(TEXT, deflated(first), rsv=4))
        payload = deflated(second)
        client.send(frame(BINARY, payload[:1000], fin=False, rsv=4)
                    + frame(CONT, payload[1000:]))
        _receive_then_close(client, 2)
    finally:
        _stop_quietly(proc)
    echoes = [zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
              for kind, data, _ in client.received if kind == "message"]
    assert echoes == [first, second] and client.close_code == 1000


HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Version: 13\r\n")
KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


@pytest.mark.parametrize("handshake", [
    HANDSHAKE + KEY + b"Origin: \xff\xfe\r\n",
    HANDSHAKE + KEY + b"Sec-WebSocket-Protocol: a, \xc3\xa9\r\n",
    HANDSHAKE + KEY + b"Sec-WebSocket-Protocol: \x80\r\n",
    HANDSHAKE + KEY + b"Sec-WebSocket-Extensions: permessage-deflate; \xff=1\r\n",
    HANDSHAKE + KEY + b"Sec-WebSocket-Extensions: x-\xff\r\n",
    HANDSHAKE + KEY + b"Sec-WebSocket-Extensions: permessage-deflate; "
                      b"server_max_window_bits=\xff\r\n",
    HANDSHAKE.replace(b"Version: 13", b"Version: 1\xff") + KEY,
    HANDSHAKE.replace(b"Host: x", b"Host: \xff") + KEY,
    HANDSHAKE.replace(b"websocket", b"websocket\xff") + KEY,
    HANDSHAKE.replace(b"GET /ws", b"GET /ws%ff%fe") + KEY,
], ids=lambda h: "-".join(str(i) for i, b in enumerate(h) if b > 0x7f)[:20] or "ascii")
def test_a_handshake_with_bytes_wsproto_cannot_read_leaves_the_worker_serving(port, handshake):
    """granian's CVE-2026-42544: bytes that are not ASCII in a handshake's
    headers crashed the worker. Here (beyond tests/test_hostile.py's two)
    every such handshake gets an answer -- 101, a 4xx, or the app's -- and the worker
    goes on: a good handshake after it is accepted and echoes. (The
    module's server logs no error meanwhile: its fixture checks.)"""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(handshake + b"\r\n")
        answer = sock.recv(4096)
    # an answer: the upgrade, a refusal, or (no longer a WebSocket upgrade
    # once its Upgrade value is not "websocket") the app's
    assert answer.startswith((b"HTTP/1.1 101 ", b"HTTP/1.1 200 ", b"HTTP/1.1 4")), answer
    client = Client(port)
    client.send(frame(TEXT, b"still here"))
    deadline = time.monotonic() + 5
    while not client.received and client.open() and time.monotonic() < deadline:
        client.pump(0.05)
    client.close()
    assert client.received == [msg(b"still here")]


@pytest.mark.parametrize("key", [b"dGhlIHNhbXBsZSBub25jZQ\xff=", b"c2hvcnQ=", b"not base64!"])
def test_a_handshake_with_a_malformed_key_is_refused(port, key):
    # RFC 6455 §4.2.1, which wsproto does not check: the server does.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HANDSHAKE + b"Sec-WebSocket-Key: %s\r\n\r\n" % key)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
