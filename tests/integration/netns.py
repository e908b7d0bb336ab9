"""A private network namespace for the test process: loopback plus a second address on a veth.

``with multi_homed(): ...`` moves the calling thread (pytest's) into a fresh network namespace
(``unshare(CLONE_NEWNET)``), brings ``lo`` up and adds a veth pair with ``SECOND_ADDRESS`` on
one end, so processes started inside (the stack, Chromium) see a host with two interfaces and
ICE has a real choice between candidate pairs. Leaving the block returns the thread to the
namespace it came from (``setns``); the private one goes away with the last process in it.
Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); :func:`available` says whether it can work.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
SECOND_ADDRESS = "10.99.0.1"

_libc = ctypes.CDLL(None, use_errno=True)


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@contextlib.contextmanager
def multi_homed(second: str = SECOND_ADDRESS) -> Iterator[str]:
    """Run the block in a private network namespace with 127.0.0.1 and ``second``; yields ``second``."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"unshare(CLONE_NEWNET): {os.strerror(errno)}")
        try:
            for command in (
                "ip link set lo up",
                "ip link add pv0 type veth peer name pv1",
                f"ip addr add {second}/24 dev pv0",
                "ip link set pv0 up",
                "ip link set pv1 up",
            ):
                subprocess.run(command.split(), check=True, capture_output=True)
            yield second
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns back to the original network namespace: {os.strerror(errno)}")
    finally:
        os.close(original)
