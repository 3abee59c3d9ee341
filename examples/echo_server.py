"""An echo server written straight against the completion interface.

Run it:  python examples/echo_server.py --backend uring --port 8888

Each step *starts* an operation and names the handler that receives its
completion. On io_uring the kernel performs the operation and the handler
gets the result; on epoll the loop waits for readiness, makes the syscall
itself, then calls the same handler. This file cannot tell which one runs it.
"""

import argparse
import signal

import uringio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=uringio.BACKENDS, default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()

    # --8<-- [start:open]
    loop = uringio.open_loop(args.backend)
    listener = uringio.listen(args.host, args.port)
    # --8<-- [end:open]

    # --8<-- [start:accept]
    def on_accept(fd):
        # A new connection's fd, or an OSError (accepting has then stopped).
        if isinstance(fd, OSError):
            print("accept failed:", fd)
            loop.stop()
            return
        serve_connection(fd)
    # --8<-- [end:accept]

    def serve_connection(fd):
        # --8<-- [start:close]
        closed = False

        def close():
            # Once per connection. A completion can arrive after we chose to
            # close (close_fd cancels a send in flight; its handler then gets
            # ECANCELED), and by then the fd number may be a new connection's.
            nonlocal closed
            if not closed:
                closed = True
                loop.close_fd(fd)   # cancel what is in flight on fd, then close
        # --8<-- [end:close]

        # --8<-- [start:data]
        def on_data(data):
            # bytes (ours to keep: copied out of the kernel's buffer), b"" at
            # EOF, or an OSError such as ConnectionResetError.
            if isinstance(data, bytes) and data:
                # The loop keeps `data` referenced until the send's completion:
                # the kernel reads it after this call returns.
                loop.send(fd, data, on_sent)
            else:
                close()
        # --8<-- [end:data]

        # --8<-- [start:sent]
        def on_sent(result):
            # The number of bytes sent (all of them), or an OSError.
            if isinstance(result, OSError):
                close()
        # --8<-- [end:sent]

        # --8<-- [start:recv]
        # Start a receive stream: on io_uring one multishot recv SQE, whose
        # CQEs each carry a buffer the kernel filled from the buffer ring.
        loop.start_recv(fd, on_data)
        # --8<-- [end:recv]

    # --8<-- [start:run]
    loop.accept(listener, on_accept)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    host, port = listener.getsockname()[:2]
    print(f"listening on {host}:{port} (backend={loop.backend})", flush=True)
    try:
        loop.run()
    finally:
        loop.cancel_accept(listener)
        listener.close()
        loop.close()
    # --8<-- [end:run]


if __name__ == "__main__":
    main()
