"""trio's own test suite (it ships inside the trio package) with uringio's
IO manager in trio's place, on each backend, beside the same suite on
trio's own epoll manager on this machine: every test that passes there
passes here, except the few in KNOWN, each with its reason
(docs/trio.md lists them too). A test in KNOWN that starts passing fails
this test as well, so the list stays true."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO

PLUGIN_DIR = os.path.join(REPO, "tests", "trio_suite")

# The tests of trio's suite that pass on trio's manager and not on
# uringio's, by backend, with why.
KNOWN = {
    "uring": {
        "_core._tests.test_io::test_io_manager_statistics":
            "it asserts that the IO statistics' backend is epoll, windows or kqueue, the three "
            "managers trio has; uringio's says uring",
    },
    "epoll": {},
}


def run_trio_suite(tmp_path, backend: str | None) -> tuple[set[str], set[str]]:
    """trio's suite on trio's own manager (``backend`` None) or uringio's:
    the ids of the tests that passed, and of those that failed."""
    report = tmp_path / f"trio-{backend or 'trio'}.xml"
    plugin = ["-p", "uringio_manager"] if backend else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PLUGIN_DIR, REPO]),
           "URINGIO_BACKEND": backend or ""}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
         "trio._tests.pytest_plugin", *plugin, "--pyargs", "trio",
         "--skip-optional-imports", "-W", "ignore::pytest.PytestUnknownMarkWarning",
         "--timeout", "60", f"--junitxml={report}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    if backend:
        assert f"trio's IO manager: uringio's, backend={backend}" in proc.stdout
    passed, failed = set(), set()
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcomes = {child.tag for child in case}
        if outcomes & {"failure", "error"}:
            failed.add(name)
        elif "skipped" not in outcomes:
            passed.add(name)
    return passed, failed


@pytest.fixture(scope="module")
def on_trios_manager(tmp_path_factory) -> set[str]:
    passed, failed = run_trio_suite(tmp_path_factory.mktemp("trio"), None)
    assert len(passed) > 500 and not failed, sorted(failed)   # the suite itself runs here
    return passed


def test_trios_own_suite_passes_with_uringios_manager(backend, on_trios_manager, tmp_path):
    passed, failed = run_trio_suite(tmp_path, backend)
    lost = on_trios_manager - passed
    assert lost == set(KNOWN[backend]), sorted(lost ^ set(KNOWN[backend]))
    assert len(KNOWN[backend]) <= 0.02 * len(on_trios_manager)
    assert failed == lost   # (and nothing that trio's manager skips fails here)
