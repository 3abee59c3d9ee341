"""The pieces of the sanitized and installed-build runs that live outside
the package: URINGIO_SANITIZE's liburing, built apart from the plain one
(_build/liburing_build.py), and the copy of the checkout the installed
builds are tested from (scripts/checkout_copy.py)."""

import os
import sys
from pathlib import Path

import pytest

from conftest import INSTALLED, REPO

sys.path.insert(0, os.path.join(REPO, "_build"))
import liburing_build  # noqa: E402

sys.path.pop(0)


def test_extra_flags_build_liburing_in_a_folder_of_their_own(monkeypatch, tmp_path):
    # A sanitized build must never replace the archive a plain build from
    # the same checkout links (its objects would need ASan's runtime).
    monkeypatch.delenv("URINGIO_LIBURING", raising=False)
    calls = []
    monkeypatch.setattr(liburing_build, "build_vendored",
                        lambda out, extra_cflags=(): calls.append((out, list(extra_cflags))))
    flags = ["-fsanitize=address,undefined", "-g", "-O1"]
    liburing_build.find(tmp_path)
    liburing_build.find(tmp_path, extra_cflags=flags)
    liburing_build.find(tmp_path, extra_cflags=["-g"])
    version = liburing_build.vendored_version()
    (plain, none), (sanitized, given), (other, _) = calls
    assert plain == tmp_path / "build" / f"liburing-{version}" and none == []
    assert sanitized.parent == plain.parent and sanitized.name.startswith(plain.name + "-")
    assert given == flags
    assert len({plain, sanitized, other}) == 3


@pytest.mark.skipif(INSTALLED, reason="the run against an installed build is itself from "
                                      "such a copy, which is no git checkout")
def test_the_copy_without_the_package_leaves_out_uringio_and_setup_py(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        from checkout_copy import copy_checkout
    finally:
        sys.path.pop(0)
    copy_checkout(tmp_path / "bare", package=False)
    copy_checkout(tmp_path / "whole", package=True)
    bare, whole = tmp_path / "bare", tmp_path / "whole"
    assert not (bare / "uringio").exists() and not (bare / "setup.py").exists()
    assert (bare / "tests" / "conftest.py").is_file()
    assert (bare / "_build" / "liburing_build.py").is_file()   # the benchmarks' C needs it
    assert (whole / "uringio" / "__init__.py").is_file() and (whole / "setup.py").is_file()
    # Sources only: no build output comes along.
    assert not list(Path(whole, "uringio").rglob("*.so"))
