"""Memory per idle connection: what holding a connection open costs a server.

    python benchmarks/idle_rss.py [--servers a,b] [--connections N] [--rounds R] [--json PATH]

For each server and round: start a fresh server, open one connection and
echo one 64-byte message on it (so one-time allocations — the first
transport, the first buffers, lazily imported modules — land in the
baseline), read the server's VmRSS once it is stable; then open N more
connections, echo exactly one 64-byte message on each (checked byte for
byte), keep them all open and idle, and read VmRSS again once it is stable.
The cost per connection is the difference over N. Then the clients are
closed and the server is stopped by pid.

What this counts is the server process's user-space memory per connection:
its objects (transport or Connection, protocol, buffers, op records) and
whatever its loop keeps per fd. The kernel's socket memory is not in RSS and
is the same for every server. RSS grows in pages, so N must be large for the
figure to mean anything per connection; 5,000 is the default.

"Stable" means two reads of VmRSS 0.2 s apart agree (at most 5 s); a server
that is still allocating or freeing after an echo would otherwise be caught
half-way. A read that never settled is flagged in the output.

Servers, the listening-line handshake and the uringio import check come from
echo_bench.py. Nothing is pinned: the client here only opens sockets and
sleeps, and the figure is memory, not time.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import echo_bench as eb  # noqa: E402

DEFAULT_SERVERS = ["uring", "epoll", "uvloop", "asyncio"]
MESSAGE_SIZE = 64
# Connections being opened or echoed at once: well under the servers'
# listen backlog (4096), so a burst never overflows the accept queue (an
# overflowed SYN is retried only after a second).
WINDOW = 256
OPEN_TIMEOUT_S = 60.0
RSS_POLL_S = 0.2
RSS_SETTLE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 10.0
# fds the client needs besides the connections: stdio, the selector, logs.
SPARE_FDS = 64


# --------------------------------------------------------------------------
# The server


def _raise_nofile() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (run in a baseline server's
    child before exec; the uringio CLI does this itself)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class IdleServer(eb.Server):
    """echo_bench's Server, unpinned, with the baseline servers' fd limit
    raised before exec, and a 10 s grace after SIGTERM."""

    def __init__(self, spec: eb.ServerSpec, logdir: Path) -> None:
        # Discussion: echo_bench.Server.__init__ has no preexec_fn, so it is
        # replaced rather than called; wait_listening(), stderr_tail() and
        # the attributes they read are the same.
        self.spec = spec
        self.stdout_path = logdir / f"{spec.name}.stdout"
        self.stderr_path = logdir / f"{spec.name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                spec.argv, cwd=eb.REPO_ROOT, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
                preexec_fn=None if spec.uses_uringio else _raise_nofile,
            )
        self.pid = self.proc.pid
        self.exit_status: int | None = None

    def rss_kib(self) -> int:
        """VmRSS of the server process, in kB (KiB) as /proc reports it.

        Raises RunFailed if the process is gone.
        """
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        raise eb.RunFailed(f"could not read VmRSS (server exit status {self.proc.poll()})",
                           self.stderr_tail())

    def stable_rss_kib(self) -> tuple[int, bool]:
        """VmRSS once two reads RSS_POLL_S apart agree, or the last read
        after RSS_SETTLE_TIMEOUT_S; returns (kB, settled)."""
        deadline = time.monotonic() + RSS_SETTLE_TIMEOUT_S
        last = self.rss_kib()
        while time.monotonic() < deadline:
            time.sleep(RSS_POLL_S)
            now = self.rss_kib()
            if now == last:
                return now, True
            last = now
        return last, False

    def stop(self) -> int:
        """SIGTERM by pid, SIGKILL after STOP_TIMEOUT_S; returns the exit status."""
        if self.exit_status is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.exit_status = self.proc.returncode
        return self.exit_status


# --------------------------------------------------------------------------
# The client


class _Exchange:
    """One connection's single echo: connect, send the message, read it back."""

    __slots__ = ("sock", "message", "sent", "received")

    def __init__(self, sock: socket.socket, message: bytes) -> None:
        self.sock = sock
        self.message = message
        self.sent = 0
        self.received = bytearray()


def _message(i: int) -> bytes:
    """64 bytes that differ per connection, so a crossed echo is caught."""
    return (b"idle connection %08d " % i).ljust(MESSAGE_SIZE, b".")


def open_idle(port: int, count: int, first: int, out: list[socket.socket],
              timeout: float = OPEN_TIMEOUT_S) -> None:
    """Open ``count`` connections, echo one 64-byte message on each, and
    append each socket to ``out`` once its echo is back and checked, left
    open. At most WINDOW are in progress at once.

    Raises RunFailed on a failed connect, an early close, a wrong echo, or
    if not all are done within ``timeout``. The caller owns and closes every
    socket in ``out``, including those appended before a failure; the ones
    still in progress are closed here.
    """
    sel = selectors.DefaultSelector()
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while started < count or sel.get_map():
            while started < count and len(sel.get_map()) < WINDOW:
                s = socket.socket()
                s.setblocking(False)
                sel.register(s, selectors.EVENT_WRITE, _Exchange(s, _message(first + started)))
                started += 1
                rc = s.connect_ex((eb.HOST, port))
                if rc not in (0, errno.EINPROGRESS):
                    raise eb.RunFailed(f"connect failed: {os.strerror(rc)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise eb.RunFailed(f"{count - started + len(sel.get_map())} of {count} "
                                   f"connections not echoed within {timeout:.0f} s")
            for key, _ in sel.select(min(remaining, 0.5)):
                ex: _Exchange = key.data
                if ex.sent < MESSAGE_SIZE:
                    # Writable: the connect finished, one way or the other.
                    err = ex.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise eb.RunFailed(f"connect failed: {os.strerror(err)}")
                    ex.sent += ex.sock.send(ex.message[ex.sent:])
                    if ex.sent == MESSAGE_SIZE:
                        sel.modify(ex.sock, selectors.EVENT_READ, ex)
                    continue
                try:
                    chunk = ex.sock.recv(MESSAGE_SIZE - len(ex.received))
                except BlockingIOError:
                    continue
                if not chunk:
                    raise eb.RunFailed(f"server closed a connection after "
                                       f"{len(ex.received)} of {MESSAGE_SIZE} echoed bytes")
                ex.received += chunk
                if len(ex.received) == MESSAGE_SIZE:
                    if ex.received != ex.message:
                        raise eb.RunFailed(f"wrong echo: sent {ex.message!r}, "
                                           f"got {bytes(ex.received)!r}")
                    sel.unregister(ex.sock)
                    out.append(ex.sock)
    except ConnectionError as exc:
        raise eb.RunFailed(f"connection failed: {exc}") from None
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()


# --------------------------------------------------------------------------
# Runs


@dataclass
class RunResult:
    server: str
    round: int
    connections: int
    ok: bool = False
    error: str = ""
    detail: str = ""
    rss_before_kib: int = 0
    rss_half_kib: int = 0         # after the first half of the connections
    rss_after_kib: int = 0
    settled: bool = True          # every read of VmRSS was stable
    bytes_per_conn: float = 0.0   # growth from 1 to 1 + n connections, over n
    marginal_bytes: float = 0.0   # growth over the second half, over n - n // 2
    server_exit_status: int | None = None

    @property
    def kib_per_conn(self) -> float:
        return self.bytes_per_conn / 1024


def run_one(spec: eb.ServerSpec, round_no: int, n: int, logdir: Path) -> RunResult:
    res = RunResult(spec.name, round_no, n)
    server = None
    clients: list[socket.socket] = []
    try:
        server = IdleServer(spec, logdir)
        port = server.wait_listening()
        open_idle(port, 1, 0, clients)
        res.rss_before_kib, settled_before = server.stable_rss_kib()
        half = n // 2
        open_idle(port, half, 1, clients)
        res.rss_half_kib, settled_half = server.stable_rss_kib()
        open_idle(port, n - half, 1 + half, clients)
        res.rss_after_kib, settled_after = server.stable_rss_kib()
        res.settled = settled_before and settled_half and settled_after
        res.bytes_per_conn = (res.rss_after_kib - res.rss_before_kib) * 1024 / n
        res.marginal_bytes = (res.rss_after_kib - res.rss_half_kib) * 1024 / (n - half)
        res.ok = True
    except eb.RunFailed as exc:
        res.error, res.detail = exc.reason, exc.detail or (server.stderr_tail() if server else "")
    except OSError as exc:  # e.g. EMFILE on the client side
        res.error = f"{type(exc).__name__}: {exc}"
        if server:
            res.detail = server.stderr_tail()
    finally:
        for s in clients:
            s.close()
        if server:
            res.server_exit_status = server.stop()
    return res


def summarise(runs: list[RunResult], servers: list[str]) -> dict:
    """Per server: the median KiB per connection, its spread, and the ratio
    of that median to the reference server's median."""
    summary: dict = {}
    for name in servers:
        mine = [r for r in runs if r.server == name and r.ok]
        entry: dict = {"runs_ok": len(mine), "runs": sum(1 for r in runs if r.server == name)}
        if mine:
            costs = [r.kib_per_conn for r in mine]
            entry.update(
                kib_per_conn=statistics.median(costs),
                marginal_kib=statistics.median(r.marginal_bytes / 1024 for r in mine),
                kib_per_conn_min=min(costs), kib_per_conn_max=max(costs),
                rss_before_kib=statistics.median(r.rss_before_kib for r in mine),
                rss_after_kib=statistics.median(r.rss_after_kib for r in mine),
                all_settled=all(r.settled for r in mine),
            )
        summary[name] = entry
    ref = summary.get(eb.REFERENCE, {}).get("kib_per_conn")
    ref_marginal = summary.get(eb.REFERENCE, {}).get("marginal_kib")
    for entry in summary.values():
        if "kib_per_conn" in entry and ref:
            entry["vs_reference"] = entry["kib_per_conn"] / ref
        if "marginal_kib" in entry and ref_marginal:
            entry["marginal_vs_reference"] = entry["marginal_kib"] / ref_marginal
    return summary


def results_table(summary: dict, n: int, rounds: int) -> Table:
    table = Table(title=f"Server memory per idle connection: {n:,} connections, one "
                        f"{MESSAGE_SIZE}-byte echo each, median of {rounds} round(s)",
                  box=box.SIMPLE_HEAVY)
    for col in ("server", f"KiB/conn (×{eb.REFERENCE})", "min–max",
                f"marginal KiB/conn (×{eb.REFERENCE})", "RSS MiB before", "RSS MiB after", "ok"):
        table.add_column(col, justify="left" if col == "server" else "right")
    order = sorted(summary, key=lambda s: summary[s].get("kib_per_conn", float("inf")))
    for name in order:
        e = summary[name]
        ok = f"{e['runs_ok']}/{e['runs']}"
        if "kib_per_conn" not in e:
            table.add_row(name, "—", "—", "—", "—", "—", ok)
            continue
        ratio = f" ({e['vs_reference']:.2f}×)" if "vs_reference" in e else ""
        flag = "" if e["all_settled"] else " ~"
        table.add_row(
            name, f"{e['kib_per_conn']:.2f}{ratio}{flag}",
            f"{e['kib_per_conn_min']:.2f}–{e['kib_per_conn_max']:.2f}",
            f"{e['marginal_kib']:.2f} ({e.get('marginal_vs_reference', 0):.2f}×)",
            f"{e['rss_before_kib'] / 1024:.1f}", f"{e['rss_after_kib'] / 1024:.1f}", ok)
    return table


# --------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="idle_rss",
        description="Server memory (RSS) per idle connection, side by side "
                    "(see benchmarks/README.md).")
    p.add_argument("--servers", type=lambda v: eb._csv_choice(v, eb.SERVERS, "server"),
                   default=DEFAULT_SERVERS, metavar="A,B,...",
                   help=f"servers to run (default: {','.join(DEFAULT_SERVERS)}; any of "
                        f"{', '.join(n for n in eb.SERVERS if n != 'c-liburing')})")
    p.add_argument("--connections", type=int, default=5000,
                   help="idle connections opened after the baseline (default 5000)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; each runs every server once (default 3)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.connections < 1:
        p.error("--rounds and --connections must be >= 1")
    if "c-liburing" in args.servers:
        # It is built on demand by echo_bench's build_tools(); not worth it here.
        p.error("c-liburing is not supported here")
    return args


def _raise_client_nofile(n: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; raises
    eb.BenchError if even that is too few for ``n`` connections."""
    _raise_nofile()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + SPARE_FDS:
        raise eb.BenchError(f"RLIMIT_NOFILE hard limit is {hard}; {n} connections need "
                            f"{n + SPARE_FDS} (raise it, or use --connections)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    try:
        _raise_client_nofile(args.connections + 1)
    except eb.BenchError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2

    servers = list(args.servers)
    if any(eb.SERVERS[n].uses_uringio for n in servers):
        why = eb._uringio_import_error()
        if why:
            skipped = [n for n in servers if eb.SERVERS[n].uses_uringio]
            servers = [n for n in servers if n not in skipped]
            console.print(f"[yellow]skipping {', '.join(skipped)}:[/] `import uringio` "
                          f"failed ({why})")
    if not servers:
        console.print("[red]error:[/] no server left to run")
        return 2

    console.print(f"{len(servers)} servers × {args.rounds} round(s), "
                  f"{args.connections:,} idle connections each; a fresh server per run")
    runs: list[RunResult] = []
    interrupted = False
    logdir = Path(tempfile.mkdtemp(prefix="idle_rss."))
    previous_sigterm = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM be
        previous_sigterm = signal.signal(signal.SIGTERM, eb._raise_keyboard_interrupt)
    try:
        for rnd in range(args.rounds):
            shift = rnd % len(servers)   # rotate, so no server is always first
            for name in servers[shift:] + servers[:shift]:
                res = run_one(eb.SERVERS[name], rnd, args.connections, logdir)
                runs.append(res)
                if res.ok:
                    console.print(f"  round {rnd + 1}/{args.rounds} {name}: "
                                  f"{res.kib_per_conn:.2f} KiB/conn (VmRSS "
                                  f"{res.rss_before_kib} → {res.rss_after_kib} kB"
                                  f"{'' if res.settled else ', not settled'})")
                else:
                    console.print(f"  [red]round {rnd + 1}/{args.rounds} {name} failed:[/] "
                                  f"{res.error}")
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: reporting the runs completed so far")
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        shutil.rmtree(logdir, ignore_errors=True)

    summary = summarise(runs, servers)
    console.print(results_table(summary, args.connections, args.rounds))
    if any("all_settled" in e and not e["all_settled"] for e in summary.values()):
        console.print(f"  ~ VmRSS still changing after {RSS_SETTLE_TIMEOUT_S:g} s in some "
                      "run: the last read was used")
    if eb.REFERENCE not in servers:
        console.print(f"[yellow]note:[/] {eb.REFERENCE} did not run, so no ratios")
    failed = [r for r in runs if not r.ok]
    for r in failed:
        console.print(f"[red]{r.server} round {r.round + 1}:[/] {r.error}")
        if r.detail:
            console.print(r.detail, markup=False, highlight=False)
    unclean = sorted({r.server for r in runs if r.ok and r.server_exit_status != 0})
    if unclean:
        console.print(f"[yellow]warning:[/] did not exit with status 0 on SIGTERM: "
                      f"{', '.join(unclean)}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                        "python": platform.python_version()},
            "options": {"servers": servers, "connections": args.connections,
                        "rounds": args.rounds, "message_size": MESSAGE_SIZE,
                        "reference": eb.REFERENCE, "interrupted": interrupted},
            "runs": [dict(asdict(r), kib_per_conn=r.kib_per_conn) for r in runs],
            "summary": summary,
        }, indent=2) + "\n")
        console.print(f"results: {args.json}")

    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
