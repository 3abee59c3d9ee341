"""The applications ``python -m uringio serve`` runs: echo and whoami
(``apps``), HTTP/1.1 (``http``, its per-request path in ``_httpcore``), a
Redis-protocol key-value server (``resp``, its scanner in ``_resp``) and a
TCP proxy (``proxy``, on the engine's relays)."""
