"""A TCP proxy written straight against the completion interface: accept,
connect, then relay each direction with splice(2) through a pipe, so that
no byte of the traffic is ever in Python (or in user memory at all).

Run it:  python examples/proxy.py --to 127.0.0.1:8888 --port 8000 --backend uring

On io_uring each relay step is a poll linked to its splice, one
submission; on epoll the loop waits for readiness and calls splice itself.
This file cannot tell which one runs it. (``python -m uringio serve proxy``
is this, plus resets passed on and server models.)
"""

import argparse
import signal
import socket
import struct
from functools import partial

import uringio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=uringio.BACKENDS, default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--to", required=True, metavar="HOST:PORT")
    args = parser.parse_args()
    to_host, _, to_port = args.to.rpartition(":")
    target = (to_host, int(to_port))

    loop = uringio.open_loop(args.backend)
    listener = uringio.listen(args.host, args.port)

    # --8<-- [start:connect]
    def on_accept(client):
        if isinstance(client, OSError):
            print("accept failed:", client)
            loop.stop()
            return
        upstream = socket.socket()
        upstream.setblocking(False)
        loop.connect(upstream, target, partial(on_connected, client, upstream))

    def on_connected(client, upstream, result):
        # 0 once connected, or an OSError: then the client is let go.
        if isinstance(result, OSError):
            upstream.close()
            loop.close_fd(client)
            return
        relay_both_ways(client, upstream.detach())
    # --8<-- [end:connect]

    # --8<-- [start:relay]
    def relay_both_ways(client, upstream):
        ended = []
        closed = set()

        def direction_over(receiver, result):
            # The sender's EOF, all of it relayed (a byte count): a FIN to
            # the receiver. Or an OSError on either side: both are reset, so
            # that neither peer takes a stream cut short for a whole one.
            ended.append(result)
            if isinstance(result, int):
                with_socket(receiver, lambda s: s.shutdown(socket.SHUT_WR))
            else:
                for fd in (client, upstream):
                    with_socket(fd, lambda s: s.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)))
            if len(ended) == 2 or isinstance(result, OSError):
                for fd in (client, upstream):
                    if fd not in closed:
                        closed.add(fd)
                        loop.close_fd(fd)   # ends the other relay, if it runs

        loop.relay(client, upstream, partial(direction_over, upstream))
        loop.relay(upstream, client, partial(direction_over, client))
    # --8<-- [end:relay]

    def with_socket(fd, call):
        # One call on fd through a socket object that does not own it.
        sock = socket.socket(fileno=fd)
        try:
            call(sock)
        except OSError:
            pass   # already reset: its relay says so
        finally:
            sock.detach()

    loop.accept(listener, on_accept)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    print(f"listening on {args.host}:{listener.getsockname()[1]} "
          f"(backend={loop.backend}), relaying to {args.to}", flush=True)
    loop.run()
    loop.close()
    listener.close()


if __name__ == "__main__":
    main()
