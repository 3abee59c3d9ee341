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

    loop = uringio.open_loop(args.backend)
    listener = uringio.listen(args.host, args.port)

    def on_accept(fd):
        # A new connection's fd, or an OSError (accepting has then stopped).
        if isinstance(fd, OSError):
            print("accept failed:", fd)
            loop.stop()
            return
        # Start a receive stream: on io_uring one multishot recv SQE, whose
        # CQEs each carry a buffer the kernel filled from the buffer ring.
        loop.start_recv(fd, lambda data: on_data(fd, data))

    def on_data(fd, data):
        # bytes (ours to keep: copied out of the kernel's buffer), b"" at
        # EOF, or an OSError such as ConnectionResetError.
        if isinstance(data, bytes) and data:
            # The loop keeps `data` referenced until the send's completion:
            # the kernel reads it after this call returns.
            loop.send(fd, data, lambda result: on_sent(fd, result))
        else:
            loop.close_fd(fd)   # EOF or error: cancel what is left, close

    def on_sent(fd, result):
        # The number of bytes sent (all of them), or an OSError.
        if isinstance(result, OSError):
            loop.close_fd(fd)

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


if __name__ == "__main__":
    main()
