"""Benchmark: what a guest that joins a meeting's room and sends nothing costs the meeting's pages.

The stack as ``./parley up`` starts it and a three-party meeting in Chromium (``bench/abuse.py``'s);
then a guest logs in over c2s TCP from 127.0.0.2, joins the meeting's room and never answers the
focus (no media, no bridge channel). The script prints the CPU of the pages' Chromium processes
by type (% of one core, summed over the three browsers) over ``--seconds`` before it joins,
while it is in the room and after it left, with the tiles the first page shows and the decoded
height of its remote videos. Before the bridge counted only receivers whose transport is up in
``SenderSourceConstraints``, such a guest kept every page encoding its 720p layer
(docs/security.md, the bridge's inputs).

Usage: .venv/bin/python bench/silent_occupant.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from abuse import MUC, login, proc_stat, recv_until  # noqa: E402

from tests.integration.browser import LauncherStack, browsers  # noqa: E402


def chromium_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's Chromium descendants, by ``--type``."""
    me, parents, cpu = os.getpid(), {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                comm, ppid, seconds = proc_stat(int(entry))
                parents[int(entry)], cpu[int(entry)] = ppid, (comm, seconds)
    out: dict[str, float] = {}
    for pid, (comm, seconds) in cpu.items():
        up, hops = parents.get(pid), 0
        while up and up != me and hops < 20:
            up, hops = parents.get(up), hops + 1
        if up != me or not comm.startswith("chrom"):
            continue
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
            kind = next((a[7:].decode() for a in args if a.startswith(b"--type=")), "browser")
            out[kind] = out.get(kind, 0.0) + seconds
    return out


def measure(label: str, pages: list[Any], seconds: float) -> None:
    before, start = chromium_cpu(), time.monotonic()
    pages[0].wait_for_timeout(seconds * 1000)
    after, elapsed = chromium_cpu(), time.monotonic() - start
    tiles = pages[0].evaluate("[...document.querySelectorAll('.tile')].map(t => `${t.clientWidth}x${t.clientHeight}`)")
    heights = [s.get("frameHeight") for s in pages[0].evaluate("window.parley.videoStats()").values()]
    cpu = " ".join(f"{k} {100 * (after[k] - before.get(k, 0.0)) / elapsed:.1f}%" for k in sorted(after))
    print(f"{label:26} {cpu} | tiles {' '.join(tiles)} | remote heights {heights}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    launcher = LauncherStack(Path(tempfile.mkdtemp(prefix="parley-silent-")) / "run", bridges=1).start()
    try:
        offset = int(launcher.front.rsplit(":", 1)[1]) - 8000
        room = "silent-occupant"
        with browsers() as pool:
            pages = [pool.open() for _ in range(3)]
            for i, page in enumerate(pages):
                page.goto(f"{launcher.front}/{room}?name=p{i}")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                stats = [p.evaluate("window.parley ? window.parley.videoStats() : {}") for p in pages]
                if all(len(s) >= 2 and all(v.get("framesDecoded", 0) > 0 for v in s.values()) for s in stats):
                    break
                time.sleep(1)
            pages[0].wait_for_timeout(8000)  # the bridge has settled the layers
            measure("three pages", pages, args.seconds)
            sock, _ = login(5222 + offset)
            sock.sendall(f"<presence to='{room}@{MUC}/silent'><x xmlns='http://jabber.org/protocol/muc'/></presence>".encode())
            recv_until(sock, b"code='110'", 10)
            sock.settimeout(0.2)
            end = time.monotonic() + 8
            while time.monotonic() < end:  # read what the room sends; answer nothing
                with contextlib.suppress(OSError):
                    sock.recv(1 << 20)
            measure("a silent guest joined", pages, args.seconds)
            sock.close()
            pages[0].wait_for_timeout(8000)
            measure("the guest left", pages, args.seconds)
    finally:
        launcher.stop()


if __name__ == "__main__":
    main()
