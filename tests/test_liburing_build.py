"""The build's liburing (_build/liburing_build.py): the vendored release,
configured and compiled from its sources, or the system's only when asked."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "_build"))
import liburing_build  # noqa: E402

sys.path.pop(0)

PROGRAM = r"""
#include <stdio.h>
#include <liburing.h>
int main(void) {
    struct io_uring ring;
    int ret = io_uring_queue_init(4, &ring, 0);
    printf("%d.%d %d\n", io_uring_major_version(), io_uring_minor_version(), ret);
    if (ret == 0)
        io_uring_queue_exit(&ring);
    return 0;
}
"""


def test_the_vendored_release_builds_and_links_statically(tmp_path):
    lib = liburing_build.build_vendored(tmp_path / "liburing")
    version = liburing_build.vendored_version()
    assert lib.origin == "vendored" and lib.version == version
    assert [Path(p).name for p in lib.extra_objects] == ["liburing.a"]
    source, exe = tmp_path / "probe.c", tmp_path / "probe"
    source.write_text(PROGRAM)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(source), *lib.gcc_args()], check=True)
    linked = subprocess.run(["ldd", str(exe)], capture_output=True, text=True).stdout
    assert "liburing" not in linked
    reported, ret = subprocess.run([str(exe)], capture_output=True, text=True,
                                   check=True).stdout.split()
    assert reported == version          # the headers' version is the library's
    assert int(ret) in (0, -1, -12, -38)   # a ring, or EPERM/ENOMEM/ENOSYS where refused
    # Built once: a second call reuses the archive.
    before = (tmp_path / "liburing" / "liburing.a").stat().st_mtime_ns
    liburing_build.build_vendored(tmp_path / "liburing")
    assert (tmp_path / "liburing" / "liburing.a").stat().st_mtime_ns == before


def test_an_unknown_choice_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("URINGIO_LIBURING", "newest")
    with pytest.raises(liburing_build.LiburingBuildError, match="'vendored'.*or 'system'"):
        liburing_build.find(tmp_path)


def test_the_system_liburing_is_used_only_when_found(monkeypatch, tmp_path):
    """With no liburing for pkg-config to find, asking for the system's one says
    how to get it, or to build the vendored one."""
    monkeypatch.setenv("URINGIO_LIBURING", "system")
    monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(tmp_path))
    monkeypatch.setenv("PKG_CONFIG_PATH", str(tmp_path))
    with pytest.raises(liburing_build.LiburingBuildError, match="liburing-dev.*vendored"):
        liburing_build.find(tmp_path)


def test_a_system_liburing_too_old_is_refused(monkeypatch, tmp_path):
    (tmp_path / "liburing.pc").write_text(
        "prefix=/usr\nlibdir=/usr/lib\nincludedir=/usr/include\n"
        "Name: liburing\nDescription: old\nVersion: 2.1\nCflags: -I/usr/include\n"
        "Libs: -luring\n")
    monkeypatch.setenv("URINGIO_LIBURING", "system")
    monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(tmp_path))
    monkeypatch.setenv("PKG_CONFIG_PATH", str(tmp_path))
    with pytest.raises(liburing_build.LiburingBuildError, match="found liburing 2.1.*2.4"):
        liburing_build.find(tmp_path)
