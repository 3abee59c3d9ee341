"""Command line, start-up line and shutdown shared by the baseline servers.

The harness starts each server with ``--host 127.0.0.1 --port 0``, waits for
the ``listening on HOST:PORT`` line to learn the port, and stops it with
SIGTERM, after which the server must exit with status 0.
"""

import argparse
import asyncio
import signal
import socket

# Deep enough that 1,000 connections opened back to back are never refused;
# the kernel caps it at net.core.somaxconn.
BACKLOG = 4096


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    return parser.parse_args()


def announce(sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)


async def serve_protocol(protocol_factory, host: str, port: int) -> None:
    """Serve an asyncio Protocol on the running loop until a signal."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol_factory, host, port, backlog=BACKLOG)
    await serve_until_signalled(server)


async def serve_until_signalled(server: asyncio.AbstractServer) -> None:
    """Announce an asyncio server, then run it until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    announce(server.sockets[0])
    await stop.wait()
    server.close()
