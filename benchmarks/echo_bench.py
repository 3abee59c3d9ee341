"""Side-by-side TCP echo benchmark: uringio against asyncio, uvloop, trio and C.

Run it as::

    python benchmarks/echo_bench.py [--servers a,b] [--scenarios x,y] [--rounds R]

or call :func:`main` (``python -m uringio bench`` does). See
``benchmarks/README.md`` for the method and the meaning of each column.

Every run starts a fresh server process pinned to one CPU, drives it with the
C load generator pinned to another, and stops the server again. A round runs
every server once per scenario, in an order rotated from round to round, and
ratios to the reference server are taken within a round before taking their
median, so that drift of the machine between rounds cancels out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
SERVERS_DIR = BENCH_DIR / "servers"
DEFAULT_OUT = BENCH_DIR / "results"

HOST = "127.0.0.1"
REFERENCE = "uvloop"
LISTEN_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# The load generator may spend up to 5 s connecting and 2 s draining on top
# of warm-up + duration; past this much more, it is considered hung.
LOADGEN_SLACK_S = 20.0
# Every server echoes this much on one connection before it is measured.
# Why: rloop reads into a fresh 256 KiB buffer that it shrinks and frees per
# read, and glibc mmaps each one -- three syscalls a message -- until a freed
# full-size chunk raises malloc's dynamic mmap threshold. Any large read
# does that, so a server that has carried some bulk traffic runs at its
# steady rate; one that has only seen small messages since it started runs
# at about a fifth of it. One bulk echo puts every server in that state.
PRIME_BYTES = 1 << 20
PRIME_TIMEOUT_S = 10.0
LISTENING_RE = re.compile(rb"listening on \S+:(\d+)")
STDERR_TAIL_LINES = 15


class BenchError(Exception):
    """A problem that stops the whole benchmark (bad option, failed build)."""


class RunFailed(Exception):
    """One run could not produce a result; the benchmark goes on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Scenario:
    name: str
    conns: int
    size: int
    pipeline: int

    def describe(self) -> str:
        depth = f", pipeline {self.pipeline}" if self.pipeline > 1 else ""
        return f"{self.conns} connections, {self.size} B messages{depth}"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("100x64", conns=100, size=64, pipeline=1),
        Scenario("1000x64", conns=1000, size=64, pipeline=1),
        Scenario("10x16k", conns=10, size=16384, pipeline=1),
        Scenario("100x64p8", conns=100, size=64, pipeline=8),
    )
}
SYSCALL_SCENARIO = SCENARIOS["100x64"]

# --demo (``python -m uringio demo``): a quick look at the two uringio
# backends beside the reference. Options given explicitly still win.
DEMO_DEFAULTS = {
    "servers": ["uring", "epoll", "uvloop"],
    "scenarios": ["100x64", "1000x64"],
    "rounds": 1,
    "duration": 2.0,
    "warmup": 0.5,
}


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: tuple[str, ...]
    uses_uringio: bool = False
    count_syscalls: bool = False  # included in the --syscalls table


def _uringio_server(backend: str) -> ServerSpec:
    return ServerSpec(
        backend,
        (sys.executable, "-m", "uringio", "serve", "echo", "--backend", backend,
         "--host", HOST, "--port", "0"),
        uses_uringio=True,
        count_syscalls=True,
    )


def _trio_on_uringio(backend: str, name: str = "trio", script: str = "trio_echo.py") -> ServerSpec:
    # The same unmodified script, its trio.run on uringio's IO manager.
    return ServerSpec(
        f"{name}-uringio-{backend}",
        (sys.executable, "-m", "uringio.trio", "--backend", backend,
         str(SERVERS_DIR / script), "--host", HOST, "--port", "0"),
        uses_uringio=True,
        count_syscalls=True,
    )


def _trio_streams(backend: str) -> ServerSpec:
    # trio_echo.py's server on uringio.trio's streams (trio_streams_echo.py).
    return ServerSpec(
        f"trio-streams-{backend}",
        ("env", f"URINGIO_BACKEND={backend}", sys.executable,
         str(SERVERS_DIR / "trio_streams_echo.py"), "--host", HOST, "--port", "0"),
        uses_uringio=True,
        count_syscalls=True,
    )


def _python_server(name: str, script: str, count_syscalls: bool = False) -> ServerSpec:
    return ServerSpec(
        name,
        (sys.executable, str(SERVERS_DIR / script), "--host", HOST, "--port", "0"),
        count_syscalls=count_syscalls,
    )


SERVERS = {
    s.name: s
    for s in (
        _uringio_server("uring"),
        _uringio_server("epoll"),
        _python_server("asyncio", "asyncio_protocol.py"),
        _python_server("asyncio-streams", "asyncio_streams.py"),
        _python_server("uvloop", "uvloop_protocol.py", count_syscalls=True),
        _python_server("trio", "trio_echo.py", count_syscalls=True),
        _trio_on_uringio("uring"),
        _trio_on_uringio("epoll"),
        _trio_streams("uring"),
        _trio_streams("epoll"),
        _python_server("anyio-trio", "anyio_echo.py", count_syscalls=True),
        _trio_on_uringio("uring", "anyio-trio", "anyio_echo.py"),
        ServerSpec("c-liburing", (str(BUILD_DIR / "c_echo_server"), HOST, "0"),
                   count_syscalls=True),
    )
}


# --------------------------------------------------------------------------
# Building the C programs


def build_tools() -> Path:
    """Compile loadgen, c_echo_server and c_proxy if missing or older than their source.

    Returns the load generator's path.
    """
    BUILD_DIR.mkdir(exist_ok=True)
    liburing = None
    for name in ("loadgen", "c_echo_server", "c_proxy"):
        src, exe = BENCH_DIR / f"{name}.c", BUILD_DIR / name
        if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
            continue
        liburing = liburing or _liburing()
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(exe), str(src), *liburing.gcc_args()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise BenchError("gcc is needed to build the load generator") from exc
        if done.returncode != 0:
            raise BenchError(f"building {name} failed:\n$ {' '.join(cmd)}\n{done.stderr}")
    return BUILD_DIR / "loadgen"


def _liburing():
    """The liburing uringio itself builds with (_build/liburing_build.py: the
    vendored release, configured and compiled once into build/), so the C
    programs need no liburing-dev either."""
    sys.path.insert(0, str(REPO_ROOT / "_build"))
    try:
        import liburing_build
    finally:
        sys.path.pop(0)
    try:
        return liburing_build.find(REPO_ROOT)
    except liburing_build.LiburingBuildError as exc:
        raise BenchError(str(exc)) from exc


# --------------------------------------------------------------------------
# Processes


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Pin the calling thread to ``cpu`` for the block.

    Processes started inside inherit the pinning from their first
    instruction, unlike pinning them after the fact (their threads might
    already exist). sched_setaffinity(0) affects this thread only, so rich's
    refresh thread is left alone.
    """
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Send ``sig``, escalate to SIGKILL after STOP_TIMEOUT_S; return the status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Server:
    """A server process, pinned, with stdout and stderr captured to files."""

    def __init__(self, spec: ServerSpec, cpu: int | None, logdir: Path) -> None:
        self.spec = spec
        self.stdout_path = logdir / f"{spec.name}.stdout"
        self.stderr_path = logdir / f"{spec.name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            with pinned(cpu):
                # A session of its own: Ctrl-C in the terminal reaches only
                # the harness, which then stops the server in order.
                self.proc = subprocess.Popen(
                    self.spec.argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, start_new_session=True,
                )
        self.pid = self.proc.pid
        self.exit_status: int | None = None

    def wait_listening(self, timeout: float = LISTEN_TIMEOUT_S) -> int:
        """Wait for the "listening on HOST:PORT" line and return the port."""
        deadline = time.monotonic() + timeout
        while True:
            match = LISTENING_RE.search(self.stdout_path.read_bytes())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                raise RunFailed(f"exited with status {self.proc.returncode} before listening",
                                self.stderr_tail())
            if time.monotonic() > deadline:
                raise RunFailed(f"printed no 'listening on' line within {timeout:.0f} s",
                                self.stderr_tail())
            time.sleep(0.02)

    def pids(self) -> list[int]:
        """The server and its descendants (the multi model's workers)."""
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    todo += [int(c) for c in
                             Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes, all threads."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                # Fields after the parenthesised command name, which may hold
                # spaces; utime and stime are fields 14 and 15 of the line.
                fields = stat[stat.rindex(")") + 2:].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int:
        """Peak resident memory, summed over the server's processes."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        if not total:
            raise RunFailed("no VmHWM in /proc/PID/status")
        return total

    def prime(self, port: int) -> None:
        """Echo PRIME_BYTES through one connection (see PRIME_BYTES), then
        reset the peak-RSS mark so that the buffers this needed are not
        counted against the server."""
        payload = os.urandom(PRIME_BYTES)
        echoed = bytearray()
        try:
            with socket.create_connection((HOST, port), timeout=PRIME_TIMEOUT_S) as sock:
                # Sent all at once from a thread while this one reads, so the
                # server finds far more than one read's worth waiting.
                sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
                sender.start()
                while len(echoed) < len(payload):
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        break
                    echoed += chunk
                sender.join(PRIME_TIMEOUT_S)
        except OSError as exc:
            raise RunFailed(f"priming echo failed: {exc}", self.stderr_tail()) from exc
        if echoed != payload:
            raise RunFailed(f"priming echo returned {len(echoed)} of {len(payload)} bytes, "
                            "or other bytes")
        for pid in self.pids():
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

    def stop(self) -> int:
        if self.exit_status is None:
            self.exit_status = _stop_process(self.proc)
        return self.exit_status

    def stderr_tail(self) -> str:
        return _tail(self.stderr_path)


def _stderr_lines(proc: subprocess.Popen, deadline: float) -> Iterator[str]:
    """Yield the process's stderr lines as they come, until EOF or deadline."""
    fd = proc.stderr.fileno()
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunFailed("load generator did not finish in time")
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                if pending:
                    yield pending.decode(errors="replace")
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")


def run_loadgen(loadgen: Path, port: int, scenario: Scenario, warmup: float,
                duration: float, cpu: int | None, server: Server) -> dict:
    """Run the load generator; returns its JSON result plus the server's CPU
    time inside the measured window (sampled when loadgen announces the
    window's edges on stderr)."""
    argv = [str(loadgen), HOST, str(port), str(scenario.conns), str(scenario.size),
            str(scenario.pipeline), str(warmup), str(duration)]
    return drive_loadgen(argv, warmup + duration, cpu, server)


def drive_loadgen(argv: list[str], seconds: float, cpu: int | None, server: Server,
                  http: bool = False) -> dict:
    """Run loadgen as ``argv`` (either mode; warm-up + duration = ``seconds``)
    pinned to ``cpu``: its JSON result plus ``server_cpu_s``, the server's CPU
    time between MEASURE_START and MEASURE_STOP. RunFailed on any error."""
    with pinned(cpu):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    cpu_start = cpu_stop = None
    diagnostics: list[str] = []
    try:
        deadline = time.monotonic() + seconds + LOADGEN_SLACK_S
        for line in _stderr_lines(proc, deadline):
            if line == "MEASURE_START":
                cpu_start = server.cpu_seconds()
            elif line == "MEASURE_STOP":
                cpu_stop = server.cpu_seconds()
            else:
                diagnostics.append(line)
        out = proc.stdout.read().decode(errors="replace")
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RunFailed("load generator did not exit") from None
    finally:
        _stop_process(proc, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()
    detail = "\n".join(diagnostics[-STDERR_TAIL_LINES:])
    try:
        result = json.loads(out)
    except ValueError:
        raise RunFailed(f"load generator exited with status {proc.returncode} "
                        "without a result", detail) from None
    wrong, stalled, none = (
        ("bad responses", "rounds of responses never completed",
         "no responses came in the measured window") if http else
        ("wrong echoes", "echoes never completed",
         "no messages were echoed in the measured window"))
    if result["errors"]:
        raise RunFailed(
            f"load generator saw {result['errors']} errors ({result['connect_errors']} "
            f"failed connects, {result['resets']} resets, {result['mismatches']} {wrong}, "
            f"{result['stalled']} {stalled})",
            detail + "\n--- server stderr ---\n" + server.stderr_tail())
    if cpu_start is None or cpu_stop is None or not result["messages"]:
        raise RunFailed(none, detail)
    result["server_cpu_s"] = cpu_stop - cpu_start
    return result


# --------------------------------------------------------------------------
# Runs


@dataclass
class RunResult:
    server: str
    scenario: str
    round: int
    ok: bool = False
    error: str = ""
    detail: str = ""
    messages: int = 0
    seconds: float = 0.0
    msgs_per_s: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    peak_rss_kib: int = 0
    server_cpu_s: float = 0.0
    server_cpu_us_per_msg: float = 0.0
    server_cpu_util: float = 0.0
    client_cpu_s: float = 0.0
    client_cpu_util: float = 0.0
    server_exit_status: int | None = None


@dataclass
class Options:
    warmup: float
    duration: float
    server_cpu: int | None
    client_cpu: int | None
    logdir: Path
    loadgen: Path


def run_one(spec: ServerSpec, scenario: Scenario, round_no: int, opts: Options) -> RunResult:
    res = RunResult(spec.name, scenario.name, round_no)
    server = None
    try:
        server = Server(spec, opts.server_cpu, opts.logdir)
        port = server.wait_listening()
        server.prime(port)
        lg = run_loadgen(opts.loadgen, port, scenario, opts.warmup, opts.duration,
                         opts.client_cpu, server)
        res.peak_rss_kib = server.peak_rss_kib()
        res.messages, res.seconds = lg["messages"], lg["seconds"]
        res.msgs_per_s, res.p50_us, res.p99_us = lg["msgs_per_s"], lg["p50_us"], lg["p99_us"]
        res.server_cpu_s, res.client_cpu_s = lg["server_cpu_s"], lg["client_cpu_s"]
        res.server_cpu_us_per_msg = res.server_cpu_s / res.messages * 1e6
        res.server_cpu_util = res.server_cpu_s / res.seconds
        res.client_cpu_util = res.client_cpu_s / res.seconds
        res.ok = True
    except RunFailed as exc:
        res.error, res.detail = exc.reason, exc.detail
    except OSError as exc:  # e.g. the server vanished while reading /proc
        res.error = f"{type(exc).__name__}: {exc}"
        if server:
            res.detail = server.stderr_tail()
    finally:
        if server:
            res.server_exit_status = server.stop()
    return res


@dataclass
class SyscallResult:
    server: str
    ok: bool = False
    error: str = ""
    messages: int = 0
    syscalls: int = 0
    per_syscall: dict[str, int] = field(default_factory=dict)

    @property
    def per_message(self) -> float:
        return self.syscalls / self.messages if self.messages else 0.0


def parse_strace_summary(text: str) -> dict[str, int]:
    """Calls per syscall from ``strace -c`` output.

    Data rows read "% time, seconds, usecs/call, calls, [errors], name"; the
    total row is skipped (its usecs/call column is blank in some versions)
    and recomputed by the caller instead.
    """
    calls = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[-1] == "total":
            continue
        try:
            float(parts[0])
            calls[parts[-1]] = int(parts[3])
        except ValueError:
            continue  # header or separator
    return calls


def count_syscalls(spec: ServerSpec, opts: Options) -> SyscallResult:
    """Echo SYSCALL_SCENARIO with the server under ``strace -c -f``."""
    res = SyscallResult(spec.name)
    strace_out = opts.logdir / f"{spec.name}.strace"
    strace_err = opts.logdir / f"{spec.name}.strace.stderr"
    server = strace = None
    try:
        server = Server(spec, opts.server_cpu, opts.logdir)
        port = server.wait_listening()
        with open(strace_err, "wb") as err, pinned(opts.client_cpu):
            strace = subprocess.Popen(
                ["strace", "-c", "-f", "-o", str(strace_out), "-p", str(server.pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)
        deadline = time.monotonic() + LISTEN_TIMEOUT_S
        while b"attached" not in strace_err.read_bytes():
            if strace.poll() is not None or time.monotonic() > deadline:
                raise RunFailed("strace could not attach", _tail(strace_err))
            time.sleep(0.02)
        # No warm-up: strace counts from the attach, so every message
        # echoed from then on must be in the denominator.
        lg = run_loadgen(opts.loadgen, port, SYSCALL_SCENARIO, 0, opts.duration,
                         opts.client_cpu, server)
        # SIGINT makes strace detach and write its summary.
        _stop_process(strace, signal.SIGINT)
        res.per_syscall = parse_strace_summary(strace_out.read_text())
        res.syscalls = sum(res.per_syscall.values())
        res.messages = lg["messages"]
        res.ok = bool(res.syscalls)
        if not res.ok:
            res.error = "strace reported no system calls"
    except (RunFailed, OSError) as exc:
        res.error = str(exc)
    finally:
        if strace:
            _stop_process(strace, signal.SIGINT)
        if server:
            server.stop()
    return res


# --------------------------------------------------------------------------
# Statistics and reporting


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# Figures compared with the reference: summary name -> RunResult attribute.
METRICS = {
    "msgs_per_s": "msgs_per_s",
    "p99_us": "p99_us",
    "peak_rss_kib": "peak_rss_kib",
    "cpu_us_per_msg": "server_cpu_us_per_msg",
}


def paired_ratios(ok: dict, rounds: list[int], scen: str, name: str, other: str,
                  attr: str) -> list[float]:
    """``name``'s figure over ``other``'s, round by round (the rounds both
    ran in), so that drift of the machine between rounds cancels out."""
    return [
        getattr(ok[scen, name, rnd], attr) / getattr(ok[scen, other, rnd], attr)
        for rnd in rounds
        if (scen, name, rnd) in ok and (scen, other, rnd) in ok
        and getattr(ok[scen, other, rnd], attr)
    ]


# Besides the reference, uring is compared with these (the targets in the
# README: ahead of epoll mode, close to the C server).
URING_VS = ("epoll", "c-liburing")


def summarise(runs: list[RunResult], servers: list[str], scenarios: list[str]) -> dict:
    """Per scenario and server: medians, msgs/s spread, and the median of the
    round-by-round ratios to the reference server."""
    ok = {(r.scenario, r.server, r.round): r for r in runs if r.ok}
    rounds = sorted({r.round for r in runs})
    summary: dict = {}
    for scen in scenarios:
        summary[scen] = {}
        for name in servers:
            mine = [ok[scen, name, rnd] for rnd in rounds if (scen, name, rnd) in ok]
            entry: dict = {
                "runs_ok": len(mine),
                "runs": sum(1 for r in runs if r.scenario == scen and r.server == name),
            }
            if mine:
                rates = [r.msgs_per_s for r in mine]
                entry.update(msgs_per_s_min=min(rates), msgs_per_s_max=max(rates))
                entry["client_cpu_util"] = _median([r.client_cpu_util for r in mine])
                entry["server_cpu_util"] = _median([r.server_cpu_util for r in mine])
            for metric, attr in METRICS.items():
                entry[metric] = _median([getattr(r, attr) for r in mine])
                ratios = paired_ratios(ok, rounds, scen, name, REFERENCE, attr)
                entry[f"{metric}_ratio"] = _median(ratios)
                if metric == "msgs_per_s" and ratios:
                    entry["msgs_per_s_ratio_min"] = min(ratios)
                    entry["msgs_per_s_ratio_max"] = max(ratios)
            summary[scen][name] = entry
    return summary


# Paired comparisons to print, (server, baseline): by default uring against
# URING_VS; a wrapper (asyncio_bench.py) may name its own.
PAIRS: list[tuple[str, str]] = [("uring", other) for other in URING_VS]


def uring_vs(runs: list[RunResult], servers: list[str], scenarios: list[str]) -> dict:
    """Per scenario: "server / baseline" -> the median of the per-round
    msgs/s ratios, for each of PAIRS whose two servers ran."""
    ok = {(r.scenario, r.server, r.round): r for r in runs if r.ok}
    rounds = sorted({r.round for r in runs})
    pairs = [(a, b) for a, b in PAIRS if a in servers and b in servers]
    return {scen: {f"{a} / {b}": _median(paired_ratios(ok, rounds, scen, a, b, "msgs_per_s"))
                   for a, b in pairs}
            for scen in scenarios}


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _with_ratio(value: float | None, ratio: float | None, spec: str) -> str:
    """A figure followed by its ratio to the reference, e.g. "141,230 0.98×"."""
    text = _fmt(value, spec)
    return text if ratio is None else f"{text} {ratio:.2f}×"


# Above this client CPU use, and above the server's, a run may have measured
# the load generator rather than the server.
CLIENT_BOUND_UTIL = 0.9


def _client_bound(entry: dict) -> bool:
    return bool(entry["runs_ok"]) and (entry["client_cpu_util"] > CLIENT_BOUND_UTIL
                                       and entry["client_cpu_util"] >= entry["server_cpu_util"])


def scenario_table(scen: Scenario, stats: dict, servers: list[str]) -> Table:
    vs = f"(×{REFERENCE})"
    table = Table(title=f"{scen.name}: {scen.describe()}", title_justify="left",
                  box=box.SIMPLE_HEAD)
    table.add_column("server")
    table.add_column(f"msgs/s {vs}", justify="right")
    table.add_column("min–max", justify="right")
    table.add_column(f"p99 µs {vs}", justify="right")
    table.add_column(f"RSS MiB {vs}", justify="right")
    table.add_column(f"CPU µs/msg {vs}", justify="right")
    table.add_column("srv CPU", justify="right")
    table.add_column("cli CPU", justify="right")
    table.add_column("ok", justify="right")
    ordered = sorted(servers, key=lambda n: -(stats[n]["msgs_per_s"] or 0))
    for name in ordered:
        e = stats[name]
        if not e["runs"]:
            continue  # interrupted before its turn
        if not e["runs_ok"]:
            table.add_row(name, "[red]failed", *([""] * 6), f"0/{e['runs']}")
            continue
        client_cpu = _fmt(e["client_cpu_util"] * 100, ".0f", "%")
        table.add_row(
            f"[bold]{name}" if name == REFERENCE else name,
            _with_ratio(e["msgs_per_s"], e["msgs_per_s_ratio"], ",.0f"),
            f"{e['msgs_per_s_min']:,.0f}–{e['msgs_per_s_max']:,.0f}",
            _with_ratio(e["p99_us"], e["p99_us_ratio"], ",.0f"),
            _with_ratio(e["peak_rss_kib"] / 1024, e["peak_rss_kib_ratio"], ".1f"),
            _with_ratio(e["cpu_us_per_msg"], e["cpu_us_per_msg_ratio"], ".2f"),
            _fmt(e["server_cpu_util"] * 100, ".0f", "%"),
            f"[yellow]{client_cpu}!" if _client_bound(e) else client_cpu,
            f"{e['runs_ok']}/{e['runs']}",
        )
    return table


def syscall_table(results: list[SyscallResult], scen: Scenario) -> Table:
    table = Table(title=f"System calls per message ({scen.name} under strace -c -f)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("server")
    table.add_column("syscalls", justify="right")
    table.add_column("messages", justify="right")
    table.add_column("syscalls/msg", justify="right")
    table.add_column("most frequent (per msg)")
    for r in results:
        if not r.ok:
            table.add_row(r.server, "[red]failed", "", "", r.error)
            continue
        top = sorted(r.per_syscall.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(r.server, f"{r.syscalls:,}", f"{r.messages:,}", f"{r.per_message:.3f}",
                      ", ".join(f"{n} {c / r.messages:.3f}" for n, c in top))
    return table


def write_chart(summary: dict, servers: list[str], scenarios: list[str], path: Path) -> bool:
    """Grouped bars of msgs/s relative to the reference server, with the
    spread of the per-round ratios as error bars. False if nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in servers if s != REFERENCE and any(
        summary[sc][s]["msgs_per_s_ratio"] is not None for sc in scenarios)]
    if not shown:
        return False
    width = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(2.0 * len(scenarios) + 2.0, 5.0))
    for i, name in enumerate(shown):
        xs, heights, lo, hi = [], [], [], []
        for j, scen in enumerate(scenarios):
            e = summary[scen][name]
            if e["msgs_per_s_ratio"] is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            heights.append(e["msgs_per_s_ratio"])
            lo.append(e["msgs_per_s_ratio"] - e["msgs_per_s_ratio_min"])
            hi.append(e["msgs_per_s_ratio_max"] - e["msgs_per_s_ratio"])
        ax.bar(xs, heights, width, yerr=[lo, hi], capsize=2, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label=f"{REFERENCE} = 1")
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel(f"msgs/s ÷ {REFERENCE}")
    ax.set_title("TCP echo throughput relative to " + REFERENCE
                 + "\n(median of per-round ratios; whiskers: min–max)", fontsize="medium")
    ax.legend(fontsize="small", ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def machine_info(opts: Options) -> dict:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "server_cpu": opts.server_cpu,
        "client_cpu": opts.client_cpu,
    }


# --------------------------------------------------------------------------
# Command line


def _csv_choice(value: str, known: dict, what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="echo_bench",
        description="Side-by-side TCP echo benchmark (see benchmarks/README.md).")
    p.add_argument("--servers", type=lambda v: _csv_choice(v, SERVERS, "server"),
                   default=list(SERVERS), metavar="A,B,...",
                   help=f"servers to run (default: all of {', '.join(SERVERS)})")
    p.add_argument("--scenarios", type=lambda v: _csv_choice(v, SCENARIOS, "scenario"),
                   default=list(SCENARIOS), metavar="X,Y,...",
                   help=f"scenarios to run (default: all of {', '.join(SCENARIOS)})")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds; each runs every server once per scenario (default 5)")
    p.add_argument("--duration", type=float, default=5.0,
                   help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="unmeasured seconds before each measurement (default 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="directory for the JSON results and PNG chart "
                        "(default benchmarks/results/)")
    p.add_argument("--syscalls", action="store_true",
                   help="also count system calls per message under strace for "
                        + ", ".join(n for n, s in SERVERS.items() if s.count_syscalls))
    p.add_argument("--server-cpu", type=int, default=1, help="CPU for the server (default 1)")
    p.add_argument("--client-cpu", type=int, default=0,
                   help="CPU for the load generator and this harness (default 0)")
    p.add_argument("--demo", action="store_true",
                   help="a short run: " + " ".join(
                       f"--{k} {','.join(v) if isinstance(v, list) else v}"
                       for k, v in DEMO_DEFAULTS.items()))
    args = p.parse_args(argv)
    if args.demo:
        p.set_defaults(**DEMO_DEFAULTS)
        args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--rounds must be >= 1, --duration > 0 and --warmup >= 0")
    return args


def _uringio_import_error() -> str | None:
    """Why the uringio servers cannot run, or None if they can."""
    done = subprocess.run([sys.executable, "-c", "import uringio"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def _choose_cpus(args: argparse.Namespace, console: Console) -> tuple[int | None, int | None]:
    allowed = os.sched_getaffinity(0)
    if args.server_cpu == args.client_cpu or not {args.server_cpu, args.client_cpu} <= allowed:
        console.print(f"[yellow]warning:[/] cannot pin server to CPU {args.server_cpu} and "
                      f"client to CPU {args.client_cpu} (usable CPUs: {sorted(allowed)}); "
                      "running unpinned, results will be noisier")
        return None, None
    return args.server_cpu, args.client_cpu


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # rich's 80 columns would squash the tables
    try:
        loadgen = build_tools()
    except BenchError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2

    servers = list(args.servers)
    if any(SERVERS[n].uses_uringio for n in servers):
        why = _uringio_import_error()
        if why:
            skipped = [n for n in servers if SERVERS[n].uses_uringio]
            servers = [n for n in servers if n not in skipped]
            console.print(f"[yellow]skipping {', '.join(skipped)}:[/] `import uringio` "
                          f"failed ({why})")
    if not servers:
        console.print("[red]error:[/] no server left to run")
        return 2
    if REFERENCE not in servers:
        console.print(f"[yellow]note:[/] {REFERENCE} is not running, so no ratios")
    syscall_servers = [n for n in servers if SERVERS[n].count_syscalls] if args.syscalls else []
    if syscall_servers and not shutil.which("strace"):
        console.print("[yellow]skipping the system call count:[/] strace is not installed "
                      "(apt-get install strace)")
        syscall_servers = []

    server_cpu, client_cpu = _choose_cpus(args, console)
    scenarios = [SCENARIOS[s] for s in args.scenarios]
    total_runs = len(scenarios) * args.rounds * len(servers) + len(syscall_servers)
    estimate = total_runs * (args.warmup + args.duration + 1.5)
    console.print(f"{total_runs} runs of {args.warmup:g}+{args.duration:g} s, about "
                  + (f"{estimate:.0f} s" if estimate < 120 else f"{estimate / 60:.0f} min")
                  + f"; server on CPU {server_cpu}, load generator on CPU {client_cpu}; "
                  "a fresh server process for every run")

    runs: list[RunResult] = []
    syscall_results: list[SyscallResult] = []
    interrupted = False
    opts = Options(args.warmup, args.duration, server_cpu, client_cpu,
                   Path(tempfile.mkdtemp(prefix="echo_bench.")), loadgen)
    previous_sigterm = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM be
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        # The harness mostly sleeps, but keep what it does (and rich's
        # refresh thread, which inherits this) off the server's CPU.
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, refresh_per_second=2)
        with pinned(client_cpu), progress:
            task = progress.add_task("starting", total=total_runs)
            for scen in scenarios:
                for rnd in range(args.rounds):
                    shift = rnd % len(servers)
                    for name in servers[shift:] + servers[:shift]:
                        progress.update(task, description=(
                            f"{scen.name} round {rnd + 1}/{args.rounds}: {name}"))
                        res = run_one(SERVERS[name], scen, rnd, opts)
                        runs.append(res)
                        if not res.ok:
                            progress.console.print(
                                f"[red]{name} {scen.name} round {rnd + 1} failed:[/] "
                                f"{res.error}")
                        progress.advance(task)
            for name in syscall_servers:
                progress.update(task, description=f"syscalls: {name}")
                syscall_results.append(count_syscalls(SERVERS[name], opts))
                progress.advance(task)
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: reporting the runs completed so far")
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        shutil.rmtree(opts.logdir, ignore_errors=True)

    return report(console, args, opts, servers, scenarios, runs, syscall_results, interrupted)


def report(console: Console, args: argparse.Namespace, opts: Options, servers: list[str],
           scenarios: list[Scenario], runs: list[RunResult],
           syscall_results: list[SyscallResult], interrupted: bool) -> int:
    summary = summarise(runs, servers, [s.name for s in scenarios])
    versus = uring_vs(runs, servers, [s.name for s in scenarios])
    for scen in scenarios:
        if any(r.scenario == scen.name for r in runs):
            console.print(scenario_table(scen, summary[scen.name], servers))
            vs = [f"{pair} {ratio:.2f}×" for pair, ratio in versus[scen.name].items()
                  if ratio is not None]
            if vs:
                console.print("  msgs/s, median of the per-round ratios: "
                              + ", ".join(vs) + "\n")
    if syscall_results:
        console.print(syscall_table(syscall_results, SYSCALL_SCENARIO))

    failed = [r for r in runs if not r.ok]
    for r in failed:
        console.print(f"[red]{r.server} {r.scenario} round {r.round + 1}:[/] {r.error}")
        if r.detail:
            console.print(r.detail, markup=False, highlight=False)
    if any(_client_bound(e) for stats in summary.values() for e in stats.values()):
        console.print(f"[yellow]![/] the load generator was busier than "
                      f"{CLIENT_BOUND_UTIL:.0%} of its CPU and than the server: that server "
                      "may be faster than shown (see benchmarks/README.md)")
    unclean = sorted({r.server for r in runs if r.ok and r.server_exit_status != 0})
    if unclean:
        console.print(f"[yellow]warning:[/] did not exit with status 0 on SIGTERM: "
                      f"{', '.join(unclean)}")

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.out / f"echo_bench-{stamp}.json"
    json_path.write_text(json.dumps({
        "machine": machine_info(opts),
        "options": {"servers": servers, "scenarios": [asdict(s) for s in scenarios],
                    "rounds": args.rounds, "warmup_s": args.warmup,
                    "duration_s": args.duration, "reference": REFERENCE,
                    "interrupted": interrupted},
        "runs": [asdict(r) for r in runs],
        "summary": summary,
        "uring_vs": versus,
        "syscalls": [dict(asdict(r), per_message=r.per_message) for r in syscall_results],
    }, indent=2) + "\n")
    console.print(f"raw results: {json_path}")
    png_path = args.out / f"echo_bench-{stamp}.png"
    if write_chart(summary, servers, [s.name for s in scenarios], png_path):
        console.print(f"chart: {png_path}")

    if interrupted:
        return 130
    return 1 if failed or any(not r.ok for r in syscall_results) else 0


if __name__ == "__main__":
    sys.exit(main())
