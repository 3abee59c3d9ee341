# The C module _build/asgi/asgicore.c: what http.py uses of it.
from collections import deque
from collections.abc import Callable
from typing import Any

BODY_APART: int

def setup(limit: type, asgi_version: dict, status_lines: dict, unquote: Callable[[str], str],
          task_type: type, current_tasks: dict | None, cancelled_error: type,
          future_type: type, future_finish: Callable[..., None], parser_error: type,
          parser_upgrade: type) -> None: ...

class Cycle:
    proto: Any
    scope: dict[str, Any]
    body: bytearray
    waiter: Any
    status: Any
    headers: Any
    version: str
    received: int
    sent: int
    keep_alive: bool
    expect_100: bool
    more_body: bool
    body_done: bool
    disconnected: bool
    response_started: bool
    response_complete: bool
    chunked: bool
    head_only: bool
    def __init__(self, proto: Any, scope: dict[str, Any], keep_alive: bool,
                 expect_100: bool) -> None: ...
    def send(self, message: dict[str, Any]) -> Any: ...

class AsgiCore:
    transport: Any
    url: bytes
    headers: list[tuple[bytes, bytes]]
    cycle: Any
    parsing: Any
    sockname: tuple | None
    client: tuple | None
    scheme: str   # "http", or "https" over TLS: the scope's
    pipeline: deque[Any]
    loop: Any
    deadline: float
    deadline_head: bool
    trust_forwarded: bool
    body_follows: bool
    head_bytes: int
    closing: bool
    write_paused: bool
    pending_error: int
    reading_paused: bool
    client_eof: bool
    _root_path: str
    _state: dict[str, Any]
    _cycle_type: type
    _date_line: list[bytes]
    _app: Any
    _keep_alive: float
    _header_timeout: float
    _max_head: int
    _max_body: int
    _access_log: bool
    def data_received(self, data: bytes) -> None: ...
    def parsed_head(self) -> tuple[str, str, bool, bool]: ...

done: Any
