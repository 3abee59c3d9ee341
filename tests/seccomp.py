"""Refuse io_uring in a child process the way a container's seccomp profile
does, so tests see the kernel's real EPERM rather than a simulated one.

``deny_io_uring`` is meant for ``subprocess.Popen(preexec_fn=...)``: it runs
in the child between fork and exec, and the filter stays on across exec and
in every process the child forks. Only io_uring_setup is refused; with no
ring, io_uring_enter and io_uring_register are never reached.
"""

from __future__ import annotations

import ctypes
import errno
import os

# io_uring_setup(2): 425 on x86_64 and aarch64 (the asm-generic table).
NR_IO_URING_SETUP = 425

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# Classic BPF opcodes (linux/bpf_common.h).
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20   # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x05 | 0x10 | 0x00      # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06 | 0x00             # BPF_RET | BPF_K
SECCOMP_DATA_NR = 0                 # offsetof(struct seccomp_data, nr)


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8),
                ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def deny_io_uring() -> None:
    """Install a seccomp filter on this process: io_uring_setup fails with
    EPERM, every other system call is allowed. Raises OSError if the kernel
    refuses the filter."""
    if os.uname().machine not in ("x86_64", "aarch64"):
        raise OSError(errno.ENOSYS, f"no io_uring_setup number known for {os.uname().machine}")
    program = (SockFilter * 4)(
        SockFilter(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        SockFilter(BPF_JEQ_K, 0, 1, NR_IO_URING_SETUP),    # not io_uring_setup: skip one
        SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
        SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    )
    prog = SockFprog(len(program), program)
    libc = ctypes.CDLL(None, use_errno=True)
    # prctl(2) is variadic: pass every argument at its full unsigned long width.
    arg = ctypes.c_ulong
    # Without root, seccomp(2) takes a filter only once no_new_privs is set.
    if libc.prctl(PR_SET_NO_NEW_PRIVS, arg(1), arg(0), arg(0), arg(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, arg(SECCOMP_MODE_FILTER), ctypes.byref(prog),
                  arg(0), arg(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
