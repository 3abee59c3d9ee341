"""``--reload``: the Python files of an app watched, for the ``multi``
supervisor to replace its workers when one changes (as on SIGHUP: the new
worker imports the app afresh and listens before the old one retires).

The watching is watchfiles' (inotify, in a thread of its own), an optional
dependency: ``pip install 'uringio[reload]'``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("uringio")

DEBOUNCE_MS = 300   # changes this close together are one (an editor's save is several writes)


class ReloadUnavailable(RuntimeError):
    """--reload was asked for and watchfiles is not installed."""


class Watcher:
    """Calls ``on_change(paths)`` from a thread of its own each time Python
    files under ``dirs`` change, until ``stop()``."""

    def __init__(self, dirs: list[str], on_change: Callable[[list[str]], None]) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ReloadUnavailable("--reload needs watchfiles: pip install "
                                    "'uringio[reload]' (or watchfiles)") from None
        self._watchfiles = watchfiles
        self.dirs = [os.path.abspath(d) for d in dirs]
        self._on_change = on_change
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="uringio-reload", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def _watch(self) -> None:
        watchfiles = self._watchfiles
        changes = watchfiles.watch(*self.dirs, watch_filter=watchfiles.PythonFilter(),
                                   debounce=DEBOUNCE_MS, stop_event=self._stop,
                                   yield_on_timeout=True, rust_timeout=200,
                                   raise_interrupt=False)
        for changed in changes:
            self._ready.set()   # (the first timeout: the watch is in place)
            if changed:
                self._on_change(sorted({path for _change, path in changed}))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
