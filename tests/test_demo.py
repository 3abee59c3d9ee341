"""The README's demo and the side-by-side benchmark run, as `python -m uringio`
runs them (short forms: the same code, a fraction of a second a run).

Their numbers are not checked here (benchmarks are never timed tests); what
is checked is that every server they start answers the verified load (each
run's ``ok``), on both backends, and that they say so in their table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SETUP_PY = Path(REPO, "setup.py")
SHORT = ["--scenarios", "100x64", "--rounds", "1", "--duration", "0.3", "--warmup", "0.1"]


def _uringio(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uringio", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _runs(out_dir) -> list[dict]:
    (result,) = out_dir.glob("echo_bench-*.json")
    return json.loads(result.read_text())["runs"]


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """The results table's rows by server name: its cells, split on blanks."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] in ("uring", "epoll", "uvloop"):
            rows[cells[0]] = cells
    return rows


def test_demo_runs_both_backends_beside_uvloop(tmp_path):
    done = _uringio("demo", *SHORT, "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = _runs(tmp_path)
    assert {r["server"] for r in runs} == {"uring", "epoll", "uvloop"}
    for run in runs:
        assert run["ok"], run
        assert run["messages"] > 0, run
    rows = _table_rows(done.stdout)
    assert set(rows) == {"uring", "epoll", "uvloop"}, done.stdout
    assert all(row[-1] == "1/1" for row in rows.values()), rows   # the ok column
    assert "uring / epoll" in done.stdout


def test_bench_runs_the_servers_asked_for(tmp_path):
    done = _uringio("bench", "--servers", "uring,epoll", *SHORT, "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = _runs(tmp_path)
    assert sorted(r["server"] for r in runs) == ["epoll", "uring"]
    assert all(r["ok"] and r["messages"] > 0 for r in runs), runs


def test_bench_help():
    done = _uringio("bench", "--help")
    assert done.returncode == 0, done.stderr
    assert "--servers" in done.stdout and "--scenarios" in done.stdout


def test_the_benchmarks_outside_a_checkout_say_where_they_are(tmp_path, monkeypatch):
    """An installed uringio run away from a checkout: `bench` says what to
    do, not a traceback."""
    import uringio.cli as cli

    monkeypatch.setattr(cli, "__file__", "/nonexistent/site-packages/uringio/cli/__init__.py")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="benchmarks/echo_bench.py not found.*checkout"):
        cli.main(["bench", "--help"])


def test_importing_off_linux_says_so_in_one_line():
    code = "import sys; sys.platform = 'darwin'; import uringio"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: uringio runs on Linux only (io_uring and epoll are Linux's); "
        "this is darwin")


def test_version_is_the_package_version():
    import uringio

    done = _uringio("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"uringio {uringio.__version__}"
    assert uringio.__version__.count(".") == 2


@pytest.mark.skipif(not SETUP_PY.exists(),
                    reason="setup.py is not in this copy (the suite run against the wheel)")
def test_installing_off_linux_says_so_in_one_line():
    code = ("import sys; sys.platform = 'darwin'; sys.argv = ['setup.py', '--version'];"
            f"exec(compile(open({str(SETUP_PY)!r}).read(), 'setup.py', 'exec'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == ("uringio runs on Linux only (io_uring and epoll are "
                                   "Linux's); this is darwin")
