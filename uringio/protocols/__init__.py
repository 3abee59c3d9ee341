"""The applications ``python -m uringio serve`` runs: echo and whoami
(``apps``), HTTP/1.1 (``http``, its per-request path in ``_httpcore``) and
a Redis-protocol key-value server (``resp``, its scanner in ``_resp``)."""
