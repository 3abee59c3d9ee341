"""A pytest plugin for trio's own test suite: every trio run in the session
gets uringio's IO manager, on the backend in ``URINGIO_BACKEND`` (uring by
default) -- the way trio's tests swap their own managers.

    python -m pytest --pyargs trio -p trio._tests.pytest_plugin \\
        -p uringio_manager    # with tests/trio_suite on PYTHONPATH
"""

from __future__ import annotations

import os

from trio._core import _run

from uringio.trio import IOManager, check_trio_version


def pytest_configure(config) -> None:
    check_trio_version()
    backend = os.environ.get("URINGIO_BACKEND", "uring")

    class Manager(IOManager):
        # A class, as trio's own is: some tests patch its methods.
        def __init__(self) -> None:
            super().__init__(backend)

    _run.TheIOManager = Manager


def pytest_report_header(config) -> str:
    return f"trio's IO manager: uringio's, backend={os.environ.get('URINGIO_BACKEND', 'uring')}"
