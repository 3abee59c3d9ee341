"""The RESP (Redis protocol) server on both backends, through the clients
people use: the redis package, redis-cli, redis-benchmark, and a raw socket
for what clients never send (split requests, broken framing)."""

import random
import re
import shutil
import socket
import subprocess
import time
from types import SimpleNamespace

import pytest
import redis

from conftest import recv_exactly, recv_until_eof, start_server, stop_server, wait_for
from uringio import resp
from uringio.resp import MAX_LINE, resp_factory

# The server, started without the CLI: run_server with the protocol class
# as the factory, as `serve resp` does, printing the line start_server reads.
LAUNCH = ["-c", """
import sys
import uringio
from uringio.resp import RespProtocol

def on_listening(server):
    host, port = server.address[:2]
    print(f"listening on {host}:{port} (backend={server.backend})", flush=True)

uringio.run_server(RespProtocol, "127.0.0.1", 0, backend=sys.argv[sys.argv.index("--backend") + 1],
                   on_listening=on_listening)
"""]

needs_redis_tools = pytest.mark.skipif(
    not shutil.which("redis-cli") or not shutil.which("redis-benchmark"),
    reason="redis-tools (redis-cli, redis-benchmark) not installed")


@pytest.fixture
def port(backend):
    """A RESP server on ``backend``; afterwards it must exit cleanly on
    SIGTERM with nothing logged (a handler that raised would be)."""
    proc, port = start_server(LAUNCH, backend)
    try:
        yield port
    finally:
        rc = stop_server(proc)
        err = proc.stderr.read()
    assert rc == 0 and "Traceback" not in err, err


def client(port, **kwargs) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, **kwargs)


def raw(port) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- through redis-py --------------------------------------------------------

@pytest.mark.timeout(30)
def test_every_command_through_redis_py(port):
    # protocol=3 is redis-py 8's default (it opens with HELLO 3); 2 is RESP2
    # throughout. Each sends CLIENT SETINFO on connect, and SETNAME here.
    for protocol in (3, 2):
        r = client(port, protocol=protocol, client_name=f"test{protocol}")
        assert r.ping() is True
        assert r.echo(b"a\r\nb") == b"a\r\nb"
        # redis-py decodes in RESP2
        assert r.client_getname() in (f"test{protocol}", b"test%d" % protocol)
        assert r.client_setinfo("LIB-NAME", "x") is True
        hello = r.execute_command("HELLO")             # a map in RESP3, a flat array in RESP2
        if isinstance(hello, list):
            hello = dict(zip(hello[::2], hello[1::2], strict=True))
        assert hello[b"proto"] == protocol and hello[b"server"] == b"uringio"

        p = f"p{protocol}:"
        assert r.set(p + "k", b"v\x00\r\n\xff") is True
        assert r.get(p + "k") == b"v\x00\r\n\xff"
        assert r.get(p + "missing") is None
        assert r.set(p + "k", "other", nx=True) is None
        assert r.set(p + "new", "1", xx=True) is None
        assert r.set(p + "k", "w", xx=True) is True and r.get(p + "k") == b"w"
        assert r.set(p + "n", "5", nx=True) is True

        assert r.exists(p + "k", p + "n", p + "missing", p + "k") == 3
        assert r.delete(p + "k", p + "missing", p + "k") == 1
        assert r.exists(p + "k") == 0

        assert r.incr(p + "n") == 6                      # INCRBY n 1, as redis-py sends it
        assert r.execute_command("INCR", p + "n") == 7
        assert r.execute_command("INCR", p + "fresh") == 1
        assert r.set(p + "s", "abc")
        for value in ("abc", "01", " 1", "1.5", str(1 << 63)):
            r.set(p + "s", value)
            with pytest.raises(redis.ResponseError,
                               match="value is not an integer or out of range"):
                r.execute_command("INCR", p + "s")
        r.set(p + "s", str((1 << 63) - 1))
        with pytest.raises(redis.ResponseError, match="overflow"):
            r.incr(p + "s")

        assert r.mset({p + "a": "1", p + "b": b"2"}) is True
        assert r.mget(p + "a", p + "missing", p + "b") == [b"1", None, b"2"]
        with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mset'"):
            r.execute_command("MSET", p + "a", "1", p + "b")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
            r.execute_command("GET", "a", "b")
        with pytest.raises(redis.ResponseError, match="unknown command 'NOPE'"):
            r.execute_command("NOPE", "x")
        assert r.get(p + "a") == b"1"                     # the connection went on
        assert r.execute_command("COMMAND") == {}          # redis-py makes a dict of it
        assert r.execute_command("COMMAND", "DOCS") in ([], {})
        r.close()


@pytest.mark.timeout(30)
def test_set_options_and_expiry(port):
    r = client(port)
    # Deadlines of 250 ms on the monotonic clock, which the server shares
    # with us: a read answered within 250 ms of sending the SET must find
    # the key, and one that finds it gone must come 250 ms after at least,
    # whatever this machine's speed.
    ttl = 0.25
    sent = time.monotonic()
    assert r.set("px", "v", px=250) and r.set("ex", "v", ex=100)
    got = r.get("px")
    assert got == b"v" or time.monotonic() - sent >= ttl
    kept_sent = time.monotonic()
    r.set("kept", "1", px=250)
    r.set("kept", "2")                 # a plain SET drops the time to live
    counter_sent = time.monotonic()
    r.set("counter", "1", px=250)
    counter = r.incr("counter")        # 2; 1 only once the key had expired (a new key)
    assert counter == 2 or (counter == 1 and time.monotonic() - counter_sent >= ttl), counter
    assert wait_for(lambda: r.exists("px") == 0, 10.0), "px never expired"
    assert time.monotonic() - sent >= ttl, "px expired early"
    assert r.get("px") is None and r.delete("px") == 0
    if counter == 2:                   # INCR found it alive and kept its time to live
        assert wait_for(lambda: r.exists("counter") == 0, 10.0), "INCR dropped the deadline"
    time.sleep(max(0.0, kept_sent + ttl - time.monotonic()))   # past kept's first deadline
    assert r.get("ex") == b"v" and r.get("kept") == b"2"
    assert r.get("counter") is None or counter == 1
    assert r.set("px", "again", nx=True) is True      # an expired key is absent for NX too
    for bad, message in [(("EX", "0"), "invalid expire time"),
                         (("PX", "-5"), "invalid expire time"),
                         (("EX", "abc"), "not an integer"), (("EX",), "syntax error"),
                         (("NX", "XX"), "syntax error"), (("EX", "1", "PX", "1"), "syntax error"),
                         (("KEEPTTL",), "syntax error")]:
        with pytest.raises(redis.ResponseError, match=message):
            r.execute_command("SET", "k", "v", *bad)
    r.close()


@pytest.mark.timeout(60)
def test_pipeline_of_10000_commands_answered_in_order(port):
    r = client(port)
    pipe = r.pipeline(transaction=False)
    expected = []
    for i in range(2500):
        pipe.set(f"key:{i}", i)
        pipe.incr(f"key:{i}")
        pipe.get(f"key:{i}")
        pipe.incr("total")
        expected += [True, i + 1, str(i + 1).encode(), i + 1]
    assert pipe.execute() == expected
    assert r.get("total") == b"2500"
    r.close()


@pytest.mark.timeout(30)
def test_large_values_and_many_connections_share_one_store(port):
    big = bytes(range(256)) * 4096 + b"\r\n"      # 1 MiB, arrives in many chunks
    clients = [client(port) for _ in range(5)]
    clients[0].set("big", big)
    for i, r in enumerate(clients):
        assert r.get("big") == big
        r.set(f"from{i}", i)
    assert clients[-1].mget([f"from{i}" for i in range(5)]) == [b"%d" % i for i in range(5)]
    for r in clients:
        r.close()


# -- through redis-cli and redis-benchmark -----------------------------------

@needs_redis_tools
@pytest.mark.timeout(60)
def test_redis_cli(port):
    def cli(*args, stdin=None):
        proc = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], input=stdin,
                              capture_output=True, text=True, timeout=10)
        assert proc.returncode == 0 and "ERR" not in proc.stdout + proc.stderr, proc
        return proc.stdout

    assert cli("PING") == "PONG\n"
    assert cli("SET", "k", "hello world") == "OK\n"
    assert cli("GET", "k") == "hello world\n"
    assert cli("--no-raw", "GET", "missing") == "(nil)\n"
    assert cli("COMMAND") == "\n"
    assert cli("-3", "--no-raw", "MGET", "k", "missing") == '1) "hello world"\n2) (nil)\n'
    assert cli(stdin="INCR n\nINCR n\nECHO 'a b'\n") == "1\n2\na b\n"
    assert cli("--no-raw", "DEL", "k", "n") == "(integer) 2\n"


@needs_redis_tools
@pytest.mark.timeout(120)
def test_redis_benchmark(port):
    proc = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
                           "-t", "ping,set,get", "-n", "100000", "-P", "16", "-q"],
                          capture_output=True, text=True, timeout=100)
    output = proc.stdout.replace("\r", "\n") + proc.stderr
    assert proc.returncode == 0, output
    assert "error" not in output.lower() and "warning" not in output.lower(), output
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET"):
        assert re.search(rf"^{test}: [\d.]+ requests per second", output, re.M), output


# -- over a raw socket: what clients never send --------------------------------

REQUEST = (b"*3\r\n$3\r\nSET\r\n$5\r\nsplit\r\n$6\r\na\r\nb\r\n\r\n"   # a value that holds CRLFs
           b"*2\r\n$3\r\nGET\r\n$5\r\nsplit\r\n"
           b"PING\r\n"                                               # inline, as telnet sends
           b"echo  x\n"                                              # bare LF, as nc sends
           b"\r\n"                                                   # an empty line: skipped
           b"*0\r\n"                                                 # an empty array: skipped
           b"*2\r\n$4\r\nECHO\r\n$1500\r\n" + b"y" * 1500 + b"\r\n")
REPLIES = b"+OK\r\n$6\r\na\r\nb\r\n\r\n+PONG\r\n$1\r\nx\r\n$1500\r\n" + b"y" * 1500 + b"\r\n"


@pytest.mark.timeout(30)
def test_requests_split_byte_by_byte(port):
    sock = raw(port)
    head, rest = REQUEST[:120], REQUEST[120:]
    for i in range(len(head)):
        sock.sendall(head[i:i + 1])
        time.sleep(0.001)          # so each byte goes out in a segment of its own
    sock.sendall(rest)
    assert recv_exactly(sock, len(REPLIES)) == REPLIES
    sock.close()


class FakeConn:
    """What RespProtocol uses of a Connection, recording it."""

    def __init__(self):
        self.writes = []
        self.closed = False

    def write(self, data):
        assert not self.closed
        self.writes.append(data)

    def close(self):
        self.closed = True


def feed(chunks, protocol_class=None):
    protocol = (protocol_class or resp_factory())()
    conn = FakeConn()
    protocol.connection_made(conn)
    for chunk in chunks:
        protocol.data_received(chunk)
    return conn


def test_every_cut_point_gives_the_same_replies():
    # In process, without a loop: every one of the ~1,600 ways to cut the
    # request in two, and random cuts into many pieces, each on a fresh store.
    assert feed([REQUEST]).writes == [REPLIES]          # whole: one write for the chunk
    for cut in range(1, len(REQUEST)):
        assert b"".join(feed([REQUEST[:cut], REQUEST[cut:]]).writes) == REPLIES, cut
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(REQUEST)), rng.randint(2, 30)))
        pieces = [REQUEST[a:b] for a, b in zip([0, *cuts], [*cuts, len(REQUEST)], strict=True)]
        assert b"".join(feed(pieces).writes) == REPLIES, cuts


def test_a_pipelined_chunk_is_answered_with_one_write():
    batch = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n" * 100
    assert feed([batch]).writes == [b"".join(b"+OK\r\n:%d\r\n" % n for n in range(1, 101))]


def random_batch(rng):
    """Requests as clients write them, and as they do not: binary values
    holding CR, LF and CRLF, names in any case, lengths with a leading zero,
    argument counts past the fast dispatch, empty arrays, inline lines."""
    def value():
        return b"".join(rng.choice([b"\r", b"\n", b"\r\n", b"$", b"*", b"v", b"1"])
                        for _ in range(rng.randint(0, 6)))

    def array(args, canonical=True):
        head = b"$%d\r\n" if canonical else b"$0%d\r\n"
        return b"*%d\r\n" % len(args) + b"".join(head % len(a) + a + b"\r\n" for a in args)

    keys = [b"k%d" % n for n in range(4)]
    out = []
    for _ in range(rng.randint(1, 40)):
        name = rng.choice([b"SET", b"set", b"GET", b"get", b"Get", b"INCR", b"DEL", b"EXISTS",
                           b"MSET", b"MGET", b"ECHO", b"PING", b"NOPE"])
        args = [name, rng.choice(keys)]
        if name.upper() == b"SET":
            args.append(rng.choice([value(), b"%d" % rng.randint(-5, 5)]))
        elif name.upper() in (b"MSET", b"MGET", b"DEL", b"EXISTS"):
            for key in rng.sample(keys * 6, rng.randint(0, 20)):
                args += [key, value()] if name.upper() == b"MSET" else [key]
        elif name.upper() == b"ECHO":
            args[1] = value()
        kind = rng.random()
        if kind < 0.1:
            out.append(b" ".join(args[:2]).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
        elif kind < 0.15:
            out.append(array(args, canonical=False))
        elif kind < 0.18:
            out.append(b"*0\r\n")
        else:
            out.append(array(args))
    return b"".join(out)


def test_the_fast_path_agrees_with_the_parser(monkeypatch):
    # The C framing check decides which requests the split-based fast path
    # takes; with it off, _parse takes every request. Both must give the
    # same replies, byte for byte, whole and cut in two.
    rng = random.Random(11)
    batches = [random_batch(rng) for _ in range(300)]
    fast = [b"".join(feed([batch]).writes) for batch in batches]
    cut = [b"".join(feed([batch[:len(batch) // 3], batch[len(batch) // 3:]]).writes)
           for batch in batches]
    monkeypatch.setattr(resp, "resp_scan", lambda buf, size: SimpleNamespace(lines=0, consumed=0))
    slow = [b"".join(feed([batch]).writes) for batch in batches]
    assert fast == slow
    assert cut == slow
    assert sum(reply.count(b"-ERR") for reply in slow) > 10     # the batches do reach errors


def test_the_framing_check_admits_only_whole_simple_requests():
    def lines(buf):
        return resp.resp_scan(buf, len(buf)).lines

    simple = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert lines(simple * 3) == 15
    assert resp.resp_scan(simple * 3, len(simple) * 3).consumed == len(simple) * 3
    for cut in range(len(simple)):
        assert lines(simple + simple[:cut]) == 5, cut          # the cut one is left
    for other in (b"GET k\r\n", b"*0\r\n", b"*1\r\n$02\r\nab\r\n", b"*01\r\n$1\r\na\r\n",
                  b"*1\r\n$4\r\na\r\nb\r\n", b"*1\r\n:1\r\n", b"*1025\r\n", b"*1\r\n$1\r\nab\r\n"):
        assert lines(simple + other + simple) == 5, other
    assert lines(b"*1\r\n$2\r\na\r\r\n*1\r\n$2\r\n\nb\r\n") == 6   # CR or LF alone is fine


def test_connections_share_their_class_store():
    shared = resp_factory()
    feed([b"SET k 1\r\n"], shared)
    assert feed([b"GET k\r\n"], shared).writes == [b"$1\r\n1\r\n"]
    assert feed([b"GET k\r\n"]).writes == [b"$-1\r\n"]   # another factory, another store


# Each closes the connection with a protocol error, after answering what
# came before it in the same chunk.
BAD_FRAMING = [
    (b"*abc\r\n", b"invalid multibulk length"),
    (b"*2000000\r\n", b"invalid multibulk length"),              # over 1M arguments
    (b"*1\r\n$x\r\n", b"invalid bulk length"),
    (b"*1\r\n$-1\r\n", b"invalid bulk length"),
    (b"*1\r\n$600000000\r\n", b"invalid bulk length"),           # over 512 MiB
    (b"*1\r\n$4\r\nPINGxx\r\n", b"expected CRLF after a bulk string"),
    (b"*1\r\nPING\r\n", b"expected '$' before a bulk string"),
    (b"*1\r\n$" + b"1" * (MAX_LINE + 10), b"too big bulk count string"),
    (b"*" + b"1" * (MAX_LINE + 10), b"too big mbulk count string"),
    (b"GET " + b"k" * (MAX_LINE + 10), b"too big inline request"),
]


@pytest.mark.timeout(30)
def test_a_protocol_error_closes_only_that_connection(port):
    other = client(port)
    other.set("alive", "yes")
    for bad, reason in BAD_FRAMING:
        sock = raw(port)
        sock.sendall(b"PING\r\n" + bad)
        reply = recv_until_eof(sock)      # then the server closes
        assert reply == b"+PONG\r\n-ERR Protocol error: " + reason + b"\r\n"
        sock.close()
        assert other.get("alive") == b"yes"
    other.close()


@pytest.mark.timeout(30)
def test_command_errors_keep_the_connection(port):
    sock = raw(port)
    sock.sendall(b"FOO bar\r\nGET\r\n*1\r\n$6\r\nCLIENT\r\nCLIENT LIST\r\n"
                 b"HELLO 4\r\nPING a b\r\nPING\r\n")
    expected = (b"-ERR unknown command 'FOO'\r\n"
                b"-ERR wrong number of arguments for 'get' command\r\n"
                b"-ERR wrong number of arguments for 'client' command\r\n"
                b"-ERR unknown subcommand or wrong number of arguments for 'LIST'\r\n"
                b"-NOPROTO unsupported protocol version\r\n"
                b"-ERR wrong number of arguments for 'ping' command\r\n"
                b"+PONG\r\n")
    assert recv_exactly(sock, len(expected)) == expected
    # A name with CR or LF is quoted without them, so the reply stays one line.
    sock.sendall(b"*1\r\n$5\r\nA\r\nB!\r\nPING\r\n")
    expected = b"-ERR unknown command 'AB!'\r\n+PONG\r\n"
    assert recv_exactly(sock, len(expected)) == expected
    sock.close()


@pytest.mark.timeout(30)
def test_quit_answers_then_closes(port):
    sock = raw(port)
    sock.sendall(b"PING\r\nQUIT\r\nPING\r\n")
    assert recv_until_eof(sock) == b"+PONG\r\n+OK\r\n"
    sock.close()


def test_expired_keys_nobody_reads_are_reclaimed(monkeypatch):
    # Keys set with a time to live and never read again must not stay in
    # memory: the next request after their second has passed sweeps them.
    # Keys whose deadline was reset, or removed, stay.
    clock = [1000.0]
    monkeypatch.setattr(resp, "monotonic", lambda: clock[0])
    shared = resp_factory()
    requests = [b"SET gone%d v PX 500\r\n" % n for n in range(1000)]
    requests += [b"SET kept v PX 500\r\n", b"SET kept v EX 100\r\n",
                 b"SET persisted v PX 500\r\n", b"SET persisted v\r\n",
                 b"SET deleted v PX 500\r\n", b"DEL deleted\r\n"]
    feed([b"".join(requests)], shared)
    store = shared.store
    assert len(store.data) == 1002 and len(store.expires) == 1001
    clock[0] += 0.9        # some deadlines passed, but not their whole second
    feed([b"PING\r\n"], shared)
    assert len(store.data) == 1002
    clock[0] += 1.0
    assert feed([b"PING\r\n"], shared).writes == [b"+PONG\r\n"]
    assert sorted(store.data) == [b"kept", b"persisted"]
    assert list(store.expires) == [b"kept"] and sum(map(len, store.buckets.values())) == 1
    clock[0] += 200.0
    feed([b"PING\r\n"], shared)
    assert list(store.data) == [b"persisted"] and not store.expires and not store.buckets
