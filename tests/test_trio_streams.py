"""``uringio.trio``'s streams on completions, judged by trio's own stream
conformance checker (``trio.testing.check_half_closeable_stream``, with
the clogged pairs trio's tests use for its SocketStream), and by real
traffic: trio's serve_tcp / open_tcp_stream with these streams, bytes in
bulk in order, a reader that stops reading, a peer that resets. Both
backends."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

import uringio.trio as utrio
from uringio.trio.streams import RECEIVE_HIGH_WATER, SocketStream


async def stream_pair() -> tuple[SocketStream, SocketStream]:
    a, b = socket.socketpair()
    return SocketStream(a), SocketStream(b)


async def fill(stream: SocketStream) -> None:
    # trio's own fill_stream: send until send_all blocks.
    async def sender() -> None:
        while True:
            await stream.send_all(b"x" * 10000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def clogged_pair() -> tuple[SocketStream, SocketStream]:
    left, right = await stream_pair()
    await fill(left)
    await fill(right)
    return left, right


def test_trios_stream_conformance_checker(backend):
    async def main() -> None:
        with trio.fail_after(30):
            await trio.testing.check_half_closeable_stream(stream_pair, clogged_pair)

    utrio.run(main, backend=backend)


def test_serve_tcp_and_open_tcp_stream_move_bulk_bytes_in_order(backend):
    payload = bytes(range(256)) * 16384   # 4 MiB

    async def main() -> int:
        async def echo(stream: SocketStream) -> None:
            assert isinstance(stream, SocketStream)
            while data := await stream.receive_some():
                await stream.send_all(data)

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(utrio.serve_tcp, echo, 0)
            port = listeners[0].socket.getsockname()[1]
            client = await utrio.open_tcp_stream("127.0.0.1", port)
            got = bytearray()

            async def send() -> None:
                for i in range(0, len(payload), 100_000):
                    await client.send_all(payload[i:i + 100_000])
                await client.send_eof()

            nursery.start_soon(send)
            with trio.fail_after(30):
                while data := await client.receive_some(65536):
                    got += data
            assert got == payload
            await client.aclose()
            nursery.cancel_scope.cancel()
        return len(got)

    assert utrio.run(main, backend=backend) == len(payload)


def test_a_reader_that_stops_reading_stops_the_socket_and_the_sender(backend):
    # Nothing is read: the receiving side holds RECEIVE_HIGH_WATER and some
    # (then the kernel's buffers fill, and TCP stops the peer); the sender's
    # send_all blocks instead of buffering without end.
    async def main() -> tuple[int, int]:
        a, b = await stream_pair()
        sent = 0

        async def sender() -> None:
            nonlocal sent
            while True:
                await a.send_all(b"y" * 65536)
                sent += 65536

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            for _ in range(50):
                await trio.sleep(0.01)   # turns of the loop; the sender is blocked by now
            await trio.testing.wait_all_tasks_blocked()
            held = b._size
            nursery.cancel_scope.cancel()
        await a.aclose()
        await b.aclose()
        return sent, held

    sent, held = utrio.run(main, backend=backend)
    # what the receiver holds: one high water and the chunks that arrived
    # in the turn that crossed it; what was sent beyond is in the kernel.
    assert RECEIVE_HIGH_WATER <= held <= RECEIVE_HIGH_WATER + 8 * 65536
    assert sent < held + 64 * 1024 * 1024   # blocked, not endless


def test_a_reset_peer_is_a_broken_stream(backend):
    async def main() -> None:
        left, right = socket.socketpair()
        stream = SocketStream(left)
        right.close()   # the peer goes away
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):   # (the first sends may be taken before the error)
                await stream.send_all(b"z" * 65536)
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()

    utrio.run(main, backend=backend)


def test_the_streams_need_uringios_run():
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b, pytest.raises(RuntimeError, match="under uringio.trio.run"):
            SocketStream(a)

    trio.run(main)


def test_a_cancelled_receive_loses_nothing(backend):
    # A receive_some cancelled while it waits (the socket's receive stays
    # armed), and one cancelled before it starts, with bytes already there:
    # neither takes anything; the next calls get every byte, in order.
    async def main() -> bytes:
        a, b = await stream_pair()
        with trio.move_on_after(0.02) as scope:
            await b.receive_some()
        assert scope.cancelled_caught
        await a.send_all(b"one ")
        for _ in range(5):
            await trio.sleep(0.005)   # (turns: "one " is received meanwhile)
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            await b.receive_some()
        assert cancelled.cancelled_caught
        await a.send_all(b"two")
        await a.send_eof()
        got = b""
        while data := await b.receive_some():
            got += data
        await a.aclose()
        await b.aclose()
        return got

    assert utrio.run(main, backend=backend) == b"one two"


def test_connect_and_close_many_times_leaks_no_fd(backend):
    import os

    async def main() -> tuple[int, int]:
        async def handler(stream: SocketStream) -> None:
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(utrio.serve_tcp, handler, 0)
            port = listeners[0].socket.getsockname()[1]
            for _ in range(20):   # warm-up: whatever is made once is made
                await (await utrio.open_tcp_stream("127.0.0.1", port)).aclose()
            before = len(os.listdir("/proc/self/fd"))
            for _ in range(20_000):
                stream = await utrio.open_tcp_stream("127.0.0.1", port)
                await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(10):   # the last closes reach their ends
                await trio.sleep(0.01)
            after = len(os.listdir("/proc/self/fd"))
            nursery.cancel_scope.cancel()
        return before, after

    before, after = utrio.run(main, backend=backend)
    assert after <= before, (before, after)
