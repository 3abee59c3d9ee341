"""Blocking work under the ``pool`` model: the loop does IO, threads do the work.

Run it:  python examples/blocking_pool.py --backend uring --port 8888 --threads 8

Each chunk a client sends costs a blocking call (a sleep standing in for a
database query or a file system call) and is answered in upper case.
``@uringio.blocking`` makes data_received run in a worker thread and *return*
the reply; the loop writes replies on each connection in the order the data
arrived. The same class runs under every model: with ``--model single`` the
calls run inline on the loop, one at a time.
"""

import argparse
import time

import uringio


# --8<-- [start:protocol]
class SlowUpper(uringio.Protocol):
    def __init__(self, work_s: float) -> None:
        self.work_s = work_s

    @uringio.blocking
    def data_received(self, data: bytes) -> bytes:
        # In a worker thread: blocking is fine here. Return the reply;
        # never touch the connection from this method.
        time.sleep(self.work_s)
        return data.upper()
# --8<-- [end:protocol]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=uringio.BACKENDS, default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--model", choices=uringio.MODELS, default="pool")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (pool)")
    parser.add_argument("--work-ms", type=float, default=20.0,
                        help="blocking work per chunk, in milliseconds")
    args = parser.parse_args()

    # --8<-- [start:serve]
    def on_listening(server):
        host, port = server.address
        print(f"listening on {host}:{port} (backend={server.backend})", flush=True)

    work_s = args.work_ms / 1000
    status = uringio.serve(lambda: SlowUpper(work_s), args.host, args.port,
                           backend=args.backend, model=args.model,
                           threads=args.threads, on_listening=on_listening)
    # --8<-- [end:serve]
    raise SystemExit(status)


if __name__ == "__main__":
    main()
