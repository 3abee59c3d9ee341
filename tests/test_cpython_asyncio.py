"""CPython's own test_asyncio, the judge of uringio's loop as a drop-in.

Runs ``cpython_asyncio.py --check``: every test of the loop-generic mixins
that passes on asyncio's SelectorEventLoop must pass on uringio's loop, on
uring and on epoll, except those listed in its EXPECTED (with the reason).
A test that passed there only when run again is reported as a warning in
pytest's summary, and fails the check unless its KNOWN_FLAKY lists it.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import cpython_asyncio


class RetriedTest(UserWarning):
    """A test of CPython's that passed on uringio's loop only on a retry."""


@pytest.mark.slow
def test_cpython_test_asyncio_passes_on_uringios_loop_on_both_backends():
    pytest.importorskip("test.test_asyncio", reason="this Python ships without its test suite")
    script = Path(__file__).with_name("cpython_asyncio.py")
    proc = subprocess.run([sys.executable, str(script), "--check", "--timeout", "20"],
                          capture_output=True, text=True, timeout=1200)
    for line in proc.stdout.splitlines():
        if ": RETRIED: " in line or ": FLAKY: " in line:
            warnings.warn(f"cpython_asyncio.py:{line}", RetriedTest, stacklevel=1)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "0 unexpected failure(s)" in proc.stdout


def retries(*outcomes: bool):
    """A ``retry`` for judge() whose runs come out as ``outcomes``; the
    list it returns fills with the runs made."""
    runs: list[bool] = []

    def retry() -> bool:
        runs.append(outcomes[len(runs)])
        return runs[-1]
    return retry, runs


def test_a_test_that_passes_only_on_a_retry_fails_the_check_and_says_so():
    retry, runs = retries(False, True)
    verdict = cpython_asyncio.judge("uring", "test_x", "AssertionError: 1 != 2", retry)
    assert runs == [False, True]
    assert verdict.failure and verdict.retried
    assert verdict.line.startswith("  uring test_x: FLAKY: failed (AssertionError: 1 != 2), "
                                   "then passed on retry 2;")


def test_a_known_flaky_test_that_passes_on_a_retry_is_reported_not_counted(monkeypatch):
    monkeypatch.setitem(cpython_asyncio.KNOWN_FLAKY, "test_x", "a port found free, then taken")
    retry, runs = retries(True)
    verdict = cpython_asyncio.judge("epoll", "test_x", "OSError: [Errno 98]", retry)
    assert runs == [True]
    assert not verdict.failure and verdict.retried
    assert verdict.line == ("  epoll test_x: RETRIED: failed (OSError: [Errno 98]), then passed "
                            "on retry 1; known flaky: a port found free, then taken")


def test_a_test_that_fails_every_retry_fails_the_check_known_flaky_or_not(monkeypatch):
    for known in (False, True):
        if known:
            monkeypatch.setitem(cpython_asyncio.KNOWN_FLAKY, "test_x", "a reason")
        retry, runs = retries(*[False] * cpython_asyncio.RETRIES)
        verdict = cpython_asyncio.judge("uring", "test_x", "Timeout: over 20 s", retry)
        assert len(runs) == cpython_asyncio.RETRIES
        assert verdict.failure and not verdict.retried
        assert "FAILS (passes on the selector loop): Timeout: over 20 s" in verdict.line


def test_an_expected_failure_is_not_retried():
    [test] = cpython_asyncio.EXPECTED
    retry, runs = retries()
    verdict = cpython_asyncio.judge("uring", test, "", retry)
    assert runs == [] and not verdict.failure and not verdict.retried
