"""The echo server again, as a Protocol: the layer applications write against.

Run it:  python examples/echo_protocol.py --backend uring --port 8888

examples/echo_server.py starts every operation itself. Here a Connection
does that: it keeps one receive stream and one send stream on its socket,
calls data_received() with each chunk, and coalesces the writes made
meanwhile into the next send. The same file runs on both backends.
"""

import argparse

import uringio


# --8<-- [start:protocol]
class Echo(uringio.Protocol):
    def connection_made(self, conn):
        # The receive stream starts right after this returns.
        self.conn = conn

    def data_received(self, data):
        # `data` is ours (already copied out of the kernel's buffer);
        # write() queues it on the send stream and returns at once.
        self.conn.write(data)

    # A peer that sends faster than it reads would grow the write buffer
    # without bound: stop reading until it catches up (TCP then slows it).
    def pause_writing(self):
        self.conn.pause_reading()

    def resume_writing(self):
        self.conn.resume_reading()
# --8<-- [end:protocol]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=uringio.BACKENDS, default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()

    # --8<-- [start:run]
    def on_listening(server):
        host, port = server.address
        print(f"listening on {host}:{port} (backend={server.backend})", flush=True)

    # Until SIGINT or SIGTERM; then queued writes drain and it returns.
    uringio.run_server(Echo, args.host, args.port, backend=args.backend,
                       on_listening=on_listening)
    # --8<-- [end:run]


if __name__ == "__main__":
    main()
