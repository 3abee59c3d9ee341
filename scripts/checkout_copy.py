"""A copy of the checkout, for running the suite against an installed uringio.

The tests start their servers with ``cwd`` the checkout, so a checkout's
``uringio/`` (with the editable build's .so files in it) would be imported
before an installed one: the suite that checks an installed build runs from
a copy without the package. scripts/dist.py (the wheel), scripts/sanitize.py
(the sanitized build) and scripts/leakcheck.py (the debug interpreter's
build) use it; tests/conftest.py, under ``URINGIO_TEST_INSTALLED=1``,
refuses a run that imports uringio from beside the tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def checkout_files(untracked: bool = False) -> list[str]:
    """The checkout's files, relative to ROOT: those git tracks, and with
    ``untracked`` those it would add (not ignored), as the working tree has
    them now; a tracked file deleted from the working tree is left out."""
    cmd = ["git", "ls-files", "-z", "--cached"]
    if untracked:
        cmd += ["--others", "--exclude-standard"]
    names = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True).stdout
    seen = dict.fromkeys(n.decode() for n in names.split(b"\0") if n)
    return [name for name in seen if (ROOT / name).is_file()]


def copy_checkout(dest: Path, *, package: bool, untracked: bool = False) -> Path:
    """Copy the checkout into ``dest`` (modification times kept); without
    ``package``, leave out ``uringio/`` and ``setup.py``, so that nothing run
    there can import or rebuild the checkout's package. Returns ``dest``."""
    for name in checkout_files(untracked):
        # _build/ stays either way: the benchmarks' C programs build against its liburing.
        if not package and (name.startswith("uringio/") or name == "setup.py"):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest
