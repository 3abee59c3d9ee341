"""URINGIO_REQUIRE_URING=1 (CI sets it): where io_uring cannot be set up,
the tests that need it fail instead of skipping, so a regression in setting
up the ring cannot leave CI green with a few hundred skips.

A pytest run in a child process whose io_uring_setup is refused by a
seccomp filter (tests/seccomp.py), once without the switch and once with
it, over a test reached through each way the suite skips for io_uring: the
backend fixture, uring_loop, a module's needs_uring mark, a ring fixture,
and a call in the test's body."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import REPO
from seccomp import deny_io_uring

NEED_URING = [
    "tests/test_loop.py::test_call_soon_runs_in_order_and_stop_ends_run[uring]",   # backend
    "tests/test_faults.py::test_cancelled_recv_buffer_stays_referenced_until_its_completion",
    "tests/test_ring.py::test_close_releases_the_ring_fd",              # the module's mark
    "tests/test_wait_policy.py::test_completions_ready_without_a_sleep_are_not_paced",
    "tests/test_faults.py::test_cq_overflow_loses_no_completion",       # in the body
]
# The same run's epoll test passes either way: only io_uring's tests change.
EPOLL = "tests/test_loop.py::test_call_soon_runs_in_order_and_stop_ends_run[epoll]"


def outcomes(tmp_path, require: bool) -> dict[str, tuple[str, str]]:
    """Node id -> (outcome, message) from a child pytest run without
    io_uring; outcome is "passed", "skipped", "failed" or "error"."""
    env = {k: v for k, v in os.environ.items() if k != "URINGIO_REQUIRE_URING"}
    if require:
        env["URINGIO_REQUIRE_URING"] = "1"
    report = tmp_path / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junit-xml={report}", *NEED_URING, EPOLL],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=deny_io_uring)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == (1 if require else 0), (proc.returncode, proc.stdout[-3000:])
    got = {}
    for case in ET.parse(report).iter("testcase"):
        node = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        got[node] = ("passed", "")
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                outcome = {"skipped": "skipped", "failure": "failed"}.get(child.tag, "error")
                got[node] = (outcome, child.get("message", ""))
    return got


REASON = ("io_uring unavailable: [Errno 1] io_uring_queue_init failed: io_uring is "
          "disabled here")


def test_without_the_switch_io_urings_tests_skip(tmp_path):
    got = outcomes(tmp_path, require=False)
    assert {node: outcome for node, (outcome, _) in got.items()} == {
        **{node: "skipped" for node in NEED_URING}, EPOLL: "passed"}, got
    for node in NEED_URING:
        assert REASON in got[node][1], got[node]


def test_with_the_switch_they_fail_with_the_reason(tmp_path):
    got = outcomes(tmp_path, require=True)
    assert set(got) == {*NEED_URING, EPOLL}, got
    for node in NEED_URING:
        # Failed in a fixture it is an error, in the test's body a failure:
        # either fails the run; neither is a skip.
        outcome, message = got[node]
        assert outcome in ("failed", "error"), (node, got[node])
        assert REASON in message and "URINGIO_REQUIRE_URING=1" in message, (node, message)
    assert got[EPOLL] == ("passed", ""), got
