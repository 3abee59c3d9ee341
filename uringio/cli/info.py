"""``python -m uringio info``: what this machine offers io_uring."""

from __future__ import annotations

import json
import platform

from .._core.uring.ring import OPCODES_OF_INTEREST, Ring, liburing_version
from ..errors import UringUnavailable


def gather() -> dict:
    """Kernel, liburing, whether a ring can be set up (and why not), the
    set-up flags in use, supported opcodes and features, and the backend
    "auto" picks."""
    report: dict = {
        "kernel": platform.release(),
        "liburing": liburing_version(),
        "io_uring": "available",
        "reason": None,
        "setup_flags": [],
        "kernel_features": [],
        "opcodes": {},
        "features": {},
    }
    try:
        ring = Ring(8)
    except UringUnavailable as exc:
        report["io_uring"] = "unavailable"
        report["reason"] = exc.strerror
        report["auto_backend"] = "epoll"
        return report
    try:
        feats = ring.probe()
    finally:
        ring.close()
    report["setup_flags"] = list(feats.setup_flags)
    report["kernel_features"] = list(feats.kernel_features)
    report["opcodes"] = {name: feats.opcodes.get(name, False) for name in OPCODES_OF_INTEREST}
    report["features"] = {
        "multishot accept": feats.multishot_accept,
        "multishot recv": feats.multishot_recv,
        "provided buffer rings": feats.buf_ring,
        "send_zc": feats.opcodes.get("SEND_ZC", False),
    }
    try:
        from .._core.uring.loop import ProactorLoop
        loop = ProactorLoop()
        report["features"]["incremental buffers"] = loop.incremental_buffers
        loop.close()
        report["auto_backend"] = "uring"
    except UringUnavailable as exc:
        report["auto_backend"] = "epoll"
        report["reason"] = exc.strerror
    return report


def format_report(report: dict) -> str:
    yes = {True: "yes", False: "no"}
    lines = [
        f"kernel            {report['kernel']}",
        f"liburing          {report['liburing']}",
        f"io_uring          {report['io_uring']}"
        + (f" ({report['reason']})" if report["reason"] else ""),
    ]
    if report["setup_flags"] is not None and report["io_uring"] == "available":
        lines.append("setup flags       " + (" | ".join(report["setup_flags"]) or "none"))
        lines.append("kernel features   " + ", ".join(report["kernel_features"]))
        lines.append("features")
        for name, ok in report["features"].items():
            lines.append(f"  {name:<22}{yes[ok]}")
        lines.append("opcodes")
        for name, ok in report["opcodes"].items():
            lines.append(f"  {name:<22}{yes[ok]}")
    lines.append(f"auto backend      {report['auto_backend']}")
    return "\n".join(lines)


def main(as_json: bool = False) -> int:
    report = gather()
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 0
