"""The linters, as part of the suite: ruff and mypy, each with the
configuration in pyproject.toml, over the whole checkout (ruff) and the
package (mypy). CI runs the suite, so this is how CI runs them."""

import subprocess
import sys

import pytest

from conftest import INSTALLED, REPO

TIMEOUT = 240   # seconds; mypy without a cache on a slow machine


def run_tool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.mark.timeout(TIMEOUT + 30)
def test_ruff_is_clean():
    proc = run_tool("ruff", "check", ".")
    assert proc.returncode == 0, f"ruff check . failed:\n{proc.stdout}{proc.stderr}"


@pytest.mark.timeout(TIMEOUT + 30)
@pytest.mark.skipif(INSTALLED, reason="type-checks the source, which the run against the "
                                      "installed wheel leaves out (the first run checks it)")
def test_mypy_is_clean():
    proc = run_tool("mypy")
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}{proc.stderr}"
