"""CPython's own test_asyncio, the judge of uringio's loop as a drop-in.

Runs ``cpython_asyncio.py --check``: every test of the loop-generic mixins
that passes on asyncio's SelectorEventLoop must pass on uringio's loop, on
uring and on epoll, except those listed in its EXPECTED (with the reason).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("test.test_asyncio", reason="this Python ships without its test suite")


@pytest.mark.slow
def test_cpython_test_asyncio_passes_on_uringios_loop_on_both_backends():
    script = Path(__file__).with_name("cpython_asyncio.py")
    proc = subprocess.run([sys.executable, str(script), "--check", "--timeout", "20"],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "0 unexpected failure(s)" in proc.stdout
