"""The HTTP baseline's minimal protocol (``_http_minimal.py``, the very code
uvloop_http.py runs) on uringio. Beside uvloop_http.py it compares the loops
alone; beside ``serve http`` it shows what uringio's HTTP layer (routing,
Request and Response objects, limits, with its per-request path in C) costs
against a minimal protocol in Python on the same loop."""

import argparse
import sys

import uringio
from _http_minimal import MinimalHttpProtocol


class HttpProtocol(MinimalHttpProtocol, uringio.Protocol):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend", default="uring", choices=("uring", "epoll", "auto"))
    args = parser.parse_args()

    def on_listening(server):
        host, port = server.address[:2]
        print(f"listening on {host}:{port} (backend={server.backend})", flush=True)

    uringio.run_server(HttpProtocol, args.host, args.port, backend=args.backend,
                       on_listening=on_listening)
    sys.exit(0)


if __name__ == "__main__":
    main()
