"""Files on uringio: the same program on io_uring and on epoll.

    python examples/files_demo.py --backend uring|epoll [--reads 20000] [--depth 64]

Writes a file, lists its lines, then reads 4 KiB blocks at random offsets
with --depth reads in flight, and prints how many reads a second that was.
"""

import argparse
import asyncio
import mmap
import os
import random
import tempfile
import time

import uringio


# --8<-- [start:demo]
async def demo(text_path: str, path: str, reads: int, depth: int) -> None:
    # Text, as open() writes and reads it.
    async with uringio.open_file(text_path, "w", encoding="utf-8") as f:
        await f.writelines(f"line {i}\n" for i in range(1000))
    async with uringio.open_file(text_path, encoding="utf-8") as f:
        lines = [line async for line in f]
    print(f"{len(lines)} lines, the last {lines[-1]!r}")

    # Many reads in flight from one thread: on io_uring each is one
    # operation in the kernel; on epoll each is a call on a worker thread.
    size = (await uringio.files.stat(path)).st_size
    blocks = size // 4096
    async with uringio.open_file(path, "rb") as f:
        async def reader(n: int) -> None:
            buf = mmap.mmap(-1, 4096)
            for _ in range(n):
                await f.preadinto(buf, random.randrange(blocks) * 4096)

        start = time.perf_counter()
        await asyncio.gather(*(reader(reads // depth) for _ in range(depth)))
        elapsed = time.perf_counter() - start
    print(f"{reads // depth * depth} random 4 KiB reads, {depth} in flight: "
          f"{reads / elapsed:,.0f} reads/s")
# --8<-- [end:demo]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--depth", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text_path, path = os.path.join(tmp, "demo.txt"), os.path.join(tmp, "demo.bin")
        with open(path, "wb") as f:   # 16 MiB to read from
            f.write(os.urandom(16 << 20))
        # --8<-- [start:run]
        uringio.run(demo(text_path, path, args.reads, args.depth), backend=args.backend)
        # --8<-- [end:run]


if __name__ == "__main__":
    main()
