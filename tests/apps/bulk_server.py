"""A test server: a client sends b"GET <n>\\n" and gets n pattern bytes back,
then the server closes. Used to check that shutdown drains queued writes."""

import argparse
import sys

import uringio


def pattern(n: int) -> bytes:
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


class Bulk(uringio.Protocol):
    def connection_made(self, conn):
        self.conn = conn
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        if b"\n" in self.buf:
            n = int(self.buf.split()[1])
            # 1 MiB pieces, each a whole number of 256-byte blocks, so the
            # stream is pattern(n).
            for start in range(0, n, 1 << 20):
                self.conn.write(pattern(min(1 << 20, n - start)))
            self.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()

    def on_listening(server):
        host, port = server.address
        print(f"listening on {host}:{port} (backend={server.loop.backend})", flush=True)

    uringio.run_server(Bulk, "127.0.0.1", 0, backend=args.backend, on_listening=on_listening)
    sys.exit(0)


if __name__ == "__main__":
    main()
