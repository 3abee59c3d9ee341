"""Backend "uring": the io_uring completion loop, ``ProactorLoop``.

One module per concept, each the twin of the same name in ``epoll/``:
``loop`` (the ProactorLoop: submit, then dispatch what completed),
``send_stream`` (writes coalesced into one SEND in flight per socket, in C),
``files`` (each file operation one SQE), ``relay`` (a poll linked to its
splice, one submission per step). And what only a completion backend has:
``ring`` (one ``struct io_uring``, the only module that imports the cffi
binding), ``ops`` (the table of operations in flight, each id an SQE's
user_data) and ``buffers`` (pinning, the provided-buffer ring).

Nothing here imports ``epoll/``; ``_core/backend.py`` is the one module
that knows both.
"""
