"""4 KiB random reads of one file, side by side, in one run.

    python benchmarks/files_bench.py [--size-mib 512] [--duration 3] [--depths 1,16,64]
                                     [--rounds 3] [--no-direct] [--no-cached] [--only uring]

Each reader reads 4 KiB blocks at random aligned offsets for --duration
seconds with N reads in flight, on one core (CPU 1, as fio): uringio's
``open_file`` on its asyncio loop on uring and on epoll (N tasks, each
``preadinto`` into its own buffer); aiofiles on uvloop (N tasks, a file
each: seek, readinto); ``run_in_executor(os.preadv)`` on uvloop; fio's
io_uring engine (iodepth N) and its psync engine (one job: a synchronous
pread per read), the ceilings. Every Python reader reads into a buffer of
its own, at offsets drawn before the clock starts. "cached": the file is
in the page cache. "direct": O_DIRECT, every read from the disk (aiofiles
and the executor cannot read O_DIRECT into Python's unaligned buffers: not
run). Prints reads/s, medians of --rounds rotated rounds, and each
median's ratio to aiofiles (cached) and to fio's io_uring engine; then
each reader's ratio to fio round by round (the two measured back to back,
so a disk whose speed drifts between rounds moves both) and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BLOCK = 4096
CPU = 1


def ensure_fio() -> str:
    if shutil.which("fio") is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "fio"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    return shutil.which("fio") or "fio"


def make_file(size: int) -> str:
    fd, path = tempfile.mkstemp(prefix="files_bench.", dir=os.environ.get("TMPDIR", "/var/tmp"))
    chunk = os.urandom(1 << 20)
    with os.fdopen(fd, "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return path


def warm(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 22):
            pass


async def _readers(depth: int, duration: float, size: int, read_one,
                   gather=None) -> float:
    """Run ``depth`` coroutines calling ``read_one(i, offset)`` until time
    is up: reads per second. The offsets are drawn before the clock starts
    (the same sequence for every reader), so that what is timed is the
    reading, as in fio, not Python's random module. ``gather``: how the
    library runs coroutines side by side (asyncio's by default)."""
    count = 0
    rand = random.Random(1).randrange
    offsets = itertools.cycle([rand(size // BLOCK) * BLOCK for _ in range(1 << 16)])
    next_offset = offsets.__next__
    stop = time.monotonic() + duration

    async def reader(i: int) -> None:
        nonlocal count
        while time.monotonic() < stop:
            await read_one(i, next_offset())
            count += 1

    start = time.monotonic()
    await (gather or asyncio.gather)(*(reader(i) for i in range(depth)))
    return count / (time.monotonic() - start)


async def _trio_gather(*coros) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        for coro in coros:
            nursery.start_soon(lambda c=coro: c)


def run_trio(path: str, size: int, depth: int, duration: float) -> float:
    import trio

    async def main() -> float:
        # trio's open_file runs each call in a thread, and has no pread: a
        # file per reader, seek then readinto (as aiofiles).
        files = [await trio.open_file(path, "rb", buffering=0) for _ in range(depth)]
        bufs = [bytearray(BLOCK) for _ in range(depth)]

        async def read_one(i: int, offset: int) -> None:
            await files[i].seek(offset)
            await files[i].readinto(bufs[i])

        try:
            return await _readers(depth, duration, size, read_one, _trio_gather)
        finally:
            for f in files:
                await f.aclose()

    return trio.run(main)


def run_uringio_trio(backend: str, path: str, size: int, depth: int, duration: float) -> float:
    import uringio.trio

    async def main() -> float:
        async with uringio.trio.open_file(path, "rb") as f:
            bufs = [bytearray(BLOCK) for _ in range(depth)]

            async def read_one(i: int, offset: int) -> None:
                await f.preadinto(bufs[i], offset)

            return await _readers(depth, duration, size, read_one, _trio_gather)

    return uringio.trio.run(main, backend=backend)


def run_uringio(backend: str, path: str, size: int, depth: int, duration: float,
                direct: bool) -> float:
    import uringio

    async def main() -> float:
        flags = os.O_DIRECT if direct else 0
        async with uringio.open_file(path, "rb", flags=flags) as f:
            bufs = [mmap.mmap(-1, BLOCK) for _ in range(depth)]   # page-aligned

            async def read_one(i: int, offset: int) -> None:
                await f.preadinto(bufs[i], offset)

            return await _readers(depth, duration, size, read_one)

    return uringio.run(main(), backend=backend)


def run_aiofiles(path: str, size: int, depth: int, duration: float) -> float:
    import aiofiles
    import uvloop

    async def main() -> float:
        # aiofiles has no pread: a file per reader, seek then readinto.
        files = [await aiofiles.open(path, "rb", buffering=0) for _ in range(depth)]
        bufs = [bytearray(BLOCK) for _ in range(depth)]

        async def read_one(i: int, offset: int) -> None:
            await files[i].seek(offset)
            await files[i].readinto(bufs[i])

        try:
            return await _readers(depth, duration, size, read_one)
        finally:
            for f in files:
                await f.close()

    return uvloop.run(main())


def run_executor(path: str, size: int, depth: int, duration: float) -> float:
    import uvloop

    async def main() -> float:
        loop = asyncio.get_running_loop()
        fd = os.open(path, os.O_RDONLY)
        bufs = [[bytearray(BLOCK)] for _ in range(depth)]
        preadv = os.preadv

        async def read_one(i: int, offset: int) -> None:
            await loop.run_in_executor(None, preadv, fd, bufs[i], offset)

        try:
            return await _readers(depth, duration, size, read_one)
        finally:
            os.close(fd)

    return uvloop.run(main())


def run_fio(fio: str, engine: str, path: str, size: int, depth: int, duration: float,
            direct: bool) -> float:
    argv = [fio, "--name=r", f"--filename={path}", "--rw=randread", f"--bs={BLOCK}",
            f"--size={size}", f"--ioengine={engine}", f"--iodepth={depth}",
            f"--direct={int(direct)}", "--time_based", f"--runtime={duration}",
            "--norandommap", f"--cpus_allowed={CPU}", "--output-format=json",
            # fio drops the file's cached pages before it starts, by default
            f"--invalidate={int(direct)}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60)
    return json.loads(out.stdout)["jobs"][0]["read"]["iops"]


def in_child(fn, *args) -> float:
    """Run one measurement in a fresh interpreter pinned to CPU (each loop
    alone in its process, as a server would be)."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, json; sys.path.insert(0, {here!r}); import files_bench as fb; "
            f"print(json.dumps(fb.{fn}(*json.loads(sys.argv[1]))))")
    out = subprocess.run(["taskset", "-c", str(CPU), sys.executable, "-c", code,
                          json.dumps(args)], capture_output=True, text=True, check=True,
                         timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--depths", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-direct", action="store_true", help="skip the O_DIRECT runs")
    parser.add_argument("--no-cached", action="store_true", help="skip the page-cache runs")
    parser.add_argument("--only", default="",
                        help="comma-separated readers to run (a part of each name, e.g. "
                             "'uring,fio io_uring'); fio io_uring always runs")
    args = parser.parse_args(argv)
    fio = ensure_fio()
    size = args.size_mib << 20
    path = make_file(size)
    try:
        cases = (([] if args.no_cached else [("cached", False)])
                 + ([] if args.no_direct else [("direct", True)]))
        for label, direct in cases:
            for depth in (int(d) for d in args.depths.split(",")):
                runners = {
                    "uringio uring": ("run_uringio", "uring", path, size, depth, args.duration,
                                      direct),
                    "uringio epoll": ("run_uringio", "epoll", path, size, depth, args.duration,
                                      direct),
                    "fio io_uring": None,
                    "fio psync": None,
                }
                if not direct:
                    runners["aiofiles (uvloop)"] = ("run_aiofiles", path, size, depth,
                                                    args.duration)
                    runners["run_in_executor(os.preadv)"] = ("run_executor", path, size, depth,
                                                            args.duration)
                    runners["trio.open_file"] = ("run_trio", path, size, depth, args.duration)
                    for backend in ("uring", "epoll"):
                        runners[f"uringio.trio {backend}"] = ("run_uringio_trio", backend, path,
                                                              size, depth, args.duration)
                if args.only:
                    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
                    runners = {name: r for name, r in runners.items()
                               if name == "fio io_uring" or any(w in name for w in wanted)}
                results: dict[str, list[float]] = {name: [] for name in runners}
                names = list(runners)
                for rnd in range(args.rounds):
                    shift = rnd % len(names)
                    for name in names[shift:] + names[:shift]:
                        if not direct:
                            warm(path)
                        if name.startswith("fio"):
                            engine = "io_uring" if "io_uring" in name else "psync"
                            value = run_fio(fio, engine, path, size,
                                            depth if engine == "io_uring" else 1,
                                            args.duration, direct)
                        else:
                            fn, *call_args = runners[name]   # type: ignore[misc]
                            value = in_child(fn, *call_args)
                        results[name].append(value)
                medians = {name: statistics.median(v) for name, v in results.items()}
                print(f"\n{label}, {depth} in flight (4 KiB random reads, "
                      f"{args.size_mib} MiB file, median of {args.rounds}):")
                base = medians.get("aiofiles (uvloop)")
                ceiling = medians["fio io_uring"]
                for name, value in medians.items():
                    ratios = f"{value / ceiling:5.2f}× fio io_uring"
                    if base:
                        ratios += f"  {value / base:6.2f}× aiofiles"
                    print(f"  {name:28} {value:12,.0f} reads/s  {ratios}")
                # The disk's speed drifts between rounds: each round's ratio
                # to fio, measured beside it, is the steadier figure.
                fio_rounds = results["fio io_uring"]
                for name, values in results.items():
                    if name.startswith("fio"):
                        continue
                    paired = [v / f for v, f in zip(values, fio_rounds, strict=True)]
                    print(f"  {name:28} per round ×fio: "
                          + " ".join(f"{r:.2f}" for r in paired)
                          + f"  (median {statistics.median(paired):.2f})")
    finally:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
