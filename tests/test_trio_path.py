"""``uringio.trio.Path`` against ``pathlib.Path``: each method it runs on
the engine gives pathlib's answer, or pathlib's error (type, errno and
file name), on the same files -- a regular file, a directory, a missing
path, a path through a file, symlinks good and broken, a NUL -- on both
backends; the methods it leaves to trio still work and hand back its own
paths; and the operations are the engine's, not trio's threads."""

from __future__ import annotations

import os
import pathlib

import pytest
import trio

import uringio.trio as utrio
from uringio.trio import Path


def outcome(fn, *args):
    """``fn(*args)``'s result, or its error as (type, errno, filename): the
    parts of an error pathlib's callers read."""
    try:
        return "ok", fn(*args)
    except (OSError, ValueError, TypeError) as exc:
        return type(exc).__name__, getattr(exc, "errno", None), getattr(exc, "filename", None)


async def async_outcome(fn, *args):
    try:
        return "ok", await fn(*args)
    except (OSError, ValueError, TypeError) as exc:
        return type(exc).__name__, getattr(exc, "errno", None), getattr(exc, "filename", None)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "file").write_bytes(b"line one\r\nline two\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return tmp_path


NAMES = ["file", "dir", "missing", "file/under", "link", "dangling", "bad\0name"]

# (method, arguments): the ones that only look.
LOOKING = [("exists", ()), ("is_file", ()), ("is_dir", ()), ("read_bytes", ()),
           ("read_text", ()), ("read_text", ("ascii", "replace")), ("stat", ()), ("lstat", ())]


def comparable(value):
    """What of a result to compare: a stat's fields that a second stat of
    the same file repeats."""
    if isinstance(value, os.stat_result):
        return value.st_mode, value.st_ino, value.st_size, value.st_nlink
    return value


@pytest.mark.parametrize("name", NAMES)
def test_looking_gives_pathlibs_answers(backend, tree, name):
    async def main():
        found = []
        for method, args in LOOKING:
            mine = await async_outcome(getattr(Path(tree / name), method), *args)
            found.append((method, mine[0], comparable(mine[1]) if mine[0] == "ok" else mine))
        return found

    expected = []
    for method, args in LOOKING:
        theirs = outcome(getattr(pathlib.Path(tree / name), method), *args)
        expected.append((method, theirs[0], comparable(theirs[1]) if theirs[0] == "ok"
                         else theirs))
    assert utrio.run(main, backend=backend) == expected


# (method, arguments) that change the tree: each run on a fresh copy, by
# pathlib and by Path, and the trees after compared too.
CHANGING = [("write_bytes", (b"new\x00bytes",)), ("write_bytes", ("not bytes",)),
            ("write_text", ("a\nb\n",)), ("write_text", ("é", "ascii")),
            ("write_text", ("a\nb", None, None, "\r\n")), ("write_text", (b"bytes",)),
            ("unlink", ()), ("unlink", (True,)), ("rmdir", ()),
            ("mkdir", ()), ("mkdir", (0o700, False, True)), ("mkdir", (0o777, True, False)),
            ("mkdir", (0o777, True, True))]


def snapshot(root: pathlib.Path) -> dict:
    files = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            files[key] = ("link", os.readlink(path))
        elif path.is_dir():
            files[key] = ("dir", path.stat().st_mode & 0o777)
        else:
            files[key] = ("file", path.read_bytes())
    return files


@pytest.mark.parametrize("name", ["file", "dir", "missing", "missing/deeper", "file/under",
                                  "dangling"])
def test_changing_does_what_pathlib_does(backend, tmp_path, name):
    results: dict[str, list] = {"pathlib": [], "uringio": []}
    trees: dict[str, list] = {"pathlib": [], "uringio": []}
    for i, (method, args) in enumerate(CHANGING):
        for who in results:
            root = tmp_path / f"{who}-{i}"
            root.mkdir()
            (root / "file").write_bytes(b"old\n")
            (root / "dir").mkdir()
            (root / "dangling").symlink_to("nowhere")
            if who == "pathlib":
                got = outcome(getattr(pathlib.Path(root / name), method), *args)
            else:
                got = utrio.run(async_outcome, getattr(Path(root / name), method), *args,
                                backend=backend)
            if got[0] != "ok":
                got = (got[0], got[1], got[2] and os.path.relpath(got[2], root))
            results[who].append((method, args, got))
            trees[who].append(snapshot(root))
    assert results["uringio"] == results["pathlib"]
    assert trees["uringio"] == trees["pathlib"]


def test_rename_and_replace_answer_the_new_path(backend, tmp_path):
    async def main():
        src = Path(tmp_path / "a.txt")
        await src.write_text("moved")
        await Path(tmp_path / "b.txt").write_text("replaced")
        moved = await src.rename(tmp_path / "b.txt")
        back = await moved.replace(str(tmp_path / "c.txt"))
        with pytest.raises(FileNotFoundError):
            await src.rename(tmp_path / "d.txt")
        return moved, back, await back.read_text(), sorted(p.name for p in tmp_path.iterdir())

    moved, back, text, names = utrio.run(main, backend=backend)
    assert (type(moved), type(back)) == (Path, Path)
    assert (str(moved), str(back)) == (str(tmp_path / "b.txt"), str(tmp_path / "c.txt"))
    assert text == "moved" and names == ["c.txt"]


def test_paths_made_from_a_path_are_uringios_and_tries_methods_still_work(backend, tmp_path):
    async def main():
        root = Path(tmp_path)
        await (root / "sub").mkdir()
        await (root / "sub" / "x.py").write_text("pass\n")
        made = [root / "sub", (root / "sub" / "x.py").parent, root.joinpath("sub"),
                (root / "sub" / "x.py").with_suffix(".txt")]
        listed = list(await (root / "sub").iterdir())   # trio's own, in a thread
        globbed = list(await root.glob("*/*.py"))
        resolved = await (root / "sub" / ".." / "sub").resolve()
        await (root / "sub" / "x.py").touch()
        async with await (root / "sub" / "x.py").open("rb") as f:
            first = await f.read()
        return made, listed, globbed, resolved, first

    made, listed, globbed, resolved, first = utrio.run(main, backend=backend)
    for path in [*made, *listed, *globbed, resolved]:
        assert type(path) is Path and isinstance(path, trio.Path)
    assert [p.name for p in listed] == ["x.py"] and [p.name for p in globbed] == ["x.py"]
    assert resolved == Path(tmp_path / "sub") and first == b"pass\n"
    assert repr(Path("x")) == "uringio.trio.Path('x')"


def test_the_methods_are_the_engines_not_threads(backend, tmp_path, monkeypatch):
    # trio's own Path runs each of these in trio.to_thread: here none may.
    async def no_thread(*args, **kwargs):
        raise AssertionError("ran in a thread")

    monkeypatch.setattr(trio.to_thread, "run_sync", no_thread)

    async def main():
        path = Path(tmp_path / "d" / "f")
        await path.parent.mkdir(parents=True, exist_ok=True)
        await path.write_bytes(b"x" * 100_000)
        await path.write_text("text")
        checks = [await path.exists(), await path.is_file(), await path.parent.is_dir(),
                  (await path.stat()).st_size, await path.read_text()]
        await path.rename(tmp_path / "d" / "g")
        await Path(tmp_path / "d" / "g").unlink()
        await path.parent.rmdir()
        return checks

    assert utrio.run(main, backend=backend) == [True, True, True, 4, "text"]


def test_path_needs_uringios_run(tmp_path):
    async def main():
        await Path(tmp_path / "x").read_bytes()

    with pytest.raises(RuntimeError, match="uringio.trio.run"):
        trio.run(main)
