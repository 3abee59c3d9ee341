"""A small HTTP service on uringio.http: a router, three routes, one server.

Run it:  python examples/http_app.py --backend uring --port 8080

    curl http://127.0.0.1:8080/hello?name=reader
    curl http://127.0.0.1:8080/add?a=2&b=40
    curl --data-binary 'shout this' http://127.0.0.1:8080/upper

Handlers are plain functions from a Request to a Response, run on the loop
thread: keep them quick (see docs/models.md for blocking work).
"""

import argparse
from urllib.parse import parse_qs

import uringio
from uringio.http import Response, Router, http_factory

# --8<-- [start:routes]
router = Router()


@router.route("/hello")
def hello(request):
    # request.query is the raw query string, as bytes.
    name = parse_qs(request.query.decode()).get("name", ["world"])[0]
    return Response(f"hello, {name}\n")


@router.route("/add")
def add(request):
    query = parse_qs(request.query.decode())
    try:
        a, b = int(query["a"][0]), int(query["b"][0])
    except (KeyError, ValueError):
        return Response.json({"error": "need integers a and b"}, status=400)
    return Response.json({"a": a, "b": b, "sum": a + b})


@router.route("/upper", methods=("POST",))
def upper(request):
    return Response(request.body.upper(), content_type="application/octet-stream")
# --8<-- [end:routes]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=uringio.BACKENDS, default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()

    # --8<-- [start:run]
    def on_listening(server):
        host, port = server.address
        print(f"listening on {host}:{port} (backend={server.backend})", flush=True)

    # One loop, one HTTPProtocol per connection, until SIGINT or SIGTERM.
    uringio.run_server(http_factory(router), args.host, args.port,
                       backend=args.backend, on_listening=on_listening)
    # --8<-- [end:run]


if __name__ == "__main__":
    main()
