"""CPython's own test_asyncio, run against uringio's event loop.

    .venv/bin/python tests/cpython_asyncio.py [--loops uring,epoll,selector] [--mixins ...]
                                              [--timeout S] [-v]

The interpreter's standard library ships ``test.test_asyncio``; its
loop-generic mixins take the loop from a factory method. For each mixin
this builds one TestCase per loop (uringio on uring, uringio on epoll, and
asyncio's own SelectorEventLoop as the reference), runs every test under a
per-test alarm (some hang on a loop that lacks a feature), and prints, per
mixin, how many pass on each loop and which tests pass on the reference but
not on uringio. Not collected by pytest (its name does not start with
``test_``): it is a measurement, whose numbers the project's notes quote.

Known traps, handled here: the mixins' module teardowns reset the event
loop policy, so nothing of those modules' fixtures runs; tests that make
their loop with ``asyncio.new_event_loop()`` get it from a policy set
around each test.
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import signal
import sys
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import uringio
from uringio.aio import EventLoopPolicy


class Timeout(Exception):
    """A test ran past its alarm."""


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "selector":
        return lambda: asyncio.SelectorEventLoop(selectors.DefaultSelector())
    return lambda: uringio.new_event_loop(name)


def policy_for(name: str) -> asyncio.AbstractEventLoopPolicy:
    if name == "selector":
        return asyncio.DefaultEventLoopPolicy()
    return EventLoopPolicy(name)


def mixins() -> dict[str, tuple[type, ...]]:
    """Name -> the bases a concrete test case needs (mixin, then TestCase).
    ``unix_events`` is what CPython runs on its own Unix loop:
    EventLoopTestsMixin, the Unix tests on top, and the subprocess tests."""
    from asyncio import unix_events

    from test.test_asyncio import (
        test_buffered_proto,
        test_events,
        test_sendfile,
        test_server,
        test_sock_lowlevel,
        test_ssl,
        test_sslproto,
        test_streams,
        test_subprocess,
    )
    from test.test_asyncio import utils as test_utils

    # The watcher asyncio's own loop needs (3.11's default); uringio's loop
    # waits for its children itself and ignores it.
    subprocess_mixin = type("SubprocessThreadedWatcher", (test_subprocess.SubprocessWatcherMixin,),
                            {"Watcher": unix_events.ThreadedChildWatcher})
    return {
        "unix_events": (test_events.UnixEventLoopTestsMixin, test_events.SubprocessTestsMixin,
                        test_utils.TestCase),
        "subprocess": (subprocess_mixin, test_utils.TestCase),
        "sock_lowlevel": (test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase),
        "sendfile": (test_sendfile.SendfileTestsBase, test_utils.TestCase),
        "server": (test_server.BaseStartServer, test_utils.TestCase),
        "buffered_proto": (test_buffered_proto.BaseTestBufferedProtocol, test_utils.TestCase),
        "streams": (test_streams.StreamTests,),
        "start_tls": (test_sslproto.BaseStartTLS, unittest.TestCase),
        # TestSSL makes its loops with asyncio.new_event_loop(): the policy's.
        "ssl": (test_ssl.TestSSL,),
    }


def case_for(mixin: str, bases: tuple[type, ...], loop: str, timeout: float) -> type:
    factory = loop_factory(loop)
    policy = policy_for(loop)

    class Case(*bases):   # type: ignore[misc]
        def create_event_loop(self):
            return factory()

        def new_loop(self):
            return factory()

        def run(self, result=None):
            old_policy = asyncio.get_event_loop_policy()
            asyncio.set_event_loop_policy(policy)

            def expired(signum, frame):
                raise Timeout(f"over {timeout:g} s")

            old = signal.signal(signal.SIGALRM, expired)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                return super().run(result)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                asyncio.set_event_loop_policy(old_policy)

    Case.__name__ = Case.__qualname__ = f"{mixin}[{loop}]"
    return Case


def run_case(case: type, verbose: bool,
             errors: dict[str, str] | None = None) -> dict[str, str]:
    """Test name -> "pass", "fail", "error" or "skip"; ``errors`` (if given)
    gets a line saying why, for each test that failed."""
    outcome: dict[str, str] = {}
    why = errors if errors is not None else {}

    def failed(test, kind: str, err) -> None:
        outcome[test._testMethodName] = kind
        why[test._testMethodName] = f"{err[0].__name__}: {err[1]}".splitlines()[0][:200]
        if verbose:
            print(f"  {test._testMethodName}: {err[0].__name__}: {err[1]}"[:300])

    class Result(unittest.TestResult):
        def addSuccess(self, test):
            outcome[test._testMethodName] = "pass"

        def addFailure(self, test, err):
            failed(test, "fail", err)

        def addError(self, test, err):
            failed(test, "error", err)

        def addSkip(self, test, reason):
            outcome[test._testMethodName] = "skip"

        def addExpectedFailure(self, test, err):
            outcome[test._testMethodName] = "pass"

        def addUnexpectedSuccess(self, test):
            outcome[test._testMethodName] = "fail"
            why[test._testMethodName] = "unexpected success"

    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(Result())
    return outcome


# Tests that pass on asyncio's SelectorEventLoop and are known not to on
# uringio's loop, with the reason (docs/asyncio.md lists them too).
EXPECTED = {
    "test_internal_fds": "inspects the selector loop's self-pipe (_internal_fds, _csock, "
                         "_ssock); skips itself on a loop that is not a BaseSelectorEventLoop",
}

# A test that fails on uringio's loop runs again, this many times, alone: a
# few of CPython's tests race the machine (a port found free, then taken).
# One that then passes is reported (a RETRIED or FLAKY line, which
# tests/test_cpython_asyncio.py turns into a warning in pytest's summary),
# and still counts as a failure under --check unless KNOWN_FLAKY lists it:
# a test that fails one run in three is a bug in uringio until shown not to be.
RETRIES = 2

# Tests known to fail now and then for a reason that is not uringio's, with
# that reason. A retry that passes is then reported but not counted.
KNOWN_FLAKY: dict[str, str] = {}


@dataclass
class Verdict:
    """What came of a test that passes on the selector loop and failed on
    one of uringio's."""
    line: str         # what main prints
    failure: bool     # counts under --check
    retried: bool     # passed only on a retry


def judge(loop: str, test: str, why: str, retry: Callable[[], bool]) -> Verdict:
    """The verdict on ``test``, which failed on ``loop`` (``why``: the first
    line of its error); ``retry()`` runs it again, alone, True if it passed."""
    if test in EXPECTED:
        return Verdict(f"  {loop} {test}: expected ({EXPECTED[test]})", False, False)
    tries = next((i + 1 for i in range(RETRIES) if retry()), 0)
    if not tries:
        return Verdict(f"  {loop} {test}: FAILS (passes on the selector loop): {why}", True, False)
    first = f"failed ({why}), then passed on retry {tries}"
    if test in KNOWN_FLAKY:
        return Verdict(f"  {loop} {test}: RETRIED: {first}; known flaky: {KNOWN_FLAKY[test]}",
                       False, True)
    return Verdict(f"  {loop} {test}: FLAKY: {first}; it counts as a failure (if the cause "
                   "is not uringio's, add it to KNOWN_FLAKY with the reason)", True, True)


def rerun(name: str, bases: tuple[type, ...], loop: str, test: str, timeout: float,
          verbose: bool) -> bool:
    case = case_for(name, bases, loop, timeout)
    result = unittest.TestResult()
    case(test).run(result)
    ok = result.wasSuccessful() and not result.skipped
    if verbose and not ok:
        for _, trace in result.errors + result.failures:
            print("    " + trace.strip().splitlines()[-1][:300])
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default="uring,epoll,selector")
    parser.add_argument("--mixins", default=None, help="comma list (default: all)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per test")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a test that passes on the selector loop fails on "
                             "uringio's, other than those in EXPECTED, or passes there only "
                             "on a retry, other than those in KNOWN_FLAKY")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    loops = args.loops.split(",")
    if args.check and "selector" not in loops:
        parser.error("--check compares with the selector loop: keep it in --loops")
    table = mixins()
    chosen = args.mixins.split(",") if args.mixins else list(table)
    totals = {loop: [0, 0] for loop in loops}
    unexpected = retried = 0
    for name in chosen:
        errors: dict[str, dict[str, str]] = {loop: {} for loop in loops}
        results = {loop: run_case(case_for(name, table[name], loop, args.timeout), args.verbose,
                                  errors[loop])
                   for loop in loops}
        line = [f"{name:15}"]
        for loop in loops:
            res = results[loop]
            passed = sum(v == "pass" for v in res.values())
            ran = sum(v != "skip" for v in res.values())
            totals[loop][0] += passed
            totals[loop][1] += ran
            line.append(f"{loop} {passed}/{ran}")
        print("  ".join(line), flush=True)
        if "selector" not in results:
            continue
        for loop in loops:
            if loop == "selector":
                continue
            missing = sorted(t for t, v in results["selector"].items()
                             if v == "pass" and results[loop].get(t) != "pass")
            for test in missing:
                why = errors[loop].get(test, results[loop].get(test, "did not run"))
                verdict = judge(loop, test, why, partial(rerun, name, table[name], loop, test,
                                                         args.timeout, args.verbose))
                print(verdict.line, flush=True)
                unexpected += verdict.failure
                retried += verdict.retried
    print("total          " + "  ".join(f"{loop} {p}/{r}" for loop, (p, r) in totals.items()))
    print(f"{retried} test(s) passed only on a retry")
    if args.check:
        print(f"{unexpected} unexpected failure(s)")
        return 1 if unexpected else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
