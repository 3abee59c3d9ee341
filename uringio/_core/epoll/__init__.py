"""Backend "epoll": the readiness loop, ``ReactorLoop``.

One module per concept, each the twin of the same name in ``uring/``:
``loop`` (the ReactorLoop: wait for readiness, then make the call),
``send_stream`` (a write tried at once, the rest after EPOLLOUT),
``files`` (each file operation a blocking call on a worker pool: readiness
says nothing about a regular file), ``relay`` (readiness, then the splice
calls the program makes itself).

Nothing here imports ``uring/``; ``_core/backend.py`` is the one module
that knows both.
"""
