"""``--reload``: the Python files of an app watched, for the ``multi``
supervisor to replace its workers when one changes (as on SIGHUP: the new
worker imports the app afresh and listens before the old one retires).

The watching is watchfiles' (inotify, in a thread of its own), an optional
dependency: ``pip install 'uringio[reload]'``.
"""

from __future__ import annotations

import os
import threading

DEBOUNCE_MS = 300   # changes this close together are one (an editor's save is several writes)


class ReloadUnavailable(RuntimeError):
    """--reload was asked for and watchfiles is not installed."""


class Watcher:
    """Watches the Python files under ``dirs`` from a thread of its own
    until ``stop()``; ``take()`` returns the paths changed since it was
    last called.

    The thread only collects; whatever reacts (logs, forks a worker) runs
    in the caller's thread. (watchfiles itself logs each change from this
    thread: the supervisor forks between log lines, ``supervisor.py``'s
    ``fork_between_log_lines`` says why.)"""

    def __init__(self, dirs: list[str]) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ReloadUnavailable("--reload needs watchfiles: pip install "
                                    "'uringio[reload]' (or watchfiles)") from None
        self._watchfiles = watchfiles
        self.dirs = [os.path.abspath(d) for d in dirs]
        self._changed: set[str] = set()
        self._lock = threading.Lock()
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
                with self._lock:
                    self._changed.update(path for _change, path in changed)

    def take(self) -> list[str]:
        """The paths changed since the last call, sorted (none: [])."""
        with self._lock:
            changed, self._changed = self._changed, set()
        return sorted(changed)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
