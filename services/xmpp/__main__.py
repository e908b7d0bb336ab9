"""``python -m services.xmpp [--config FILE]``: the Parley XMPP broker."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys

from ..common.config import load_or_exit
from ..common.logging import setup_logging
from ..common.runtime import freeze_heap, run
from .config import load
from .server import XmppServer


def _use_c_allocator() -> None:
    """Run on the C allocator so that memory freed after an attack goes back to the system
    (``MemoryTrimmer`` in ``limits.py``). Python reads ``PYTHONMALLOC`` only at start, so the
    process re-executes itself once; an operator's own ``PYTHONMALLOC`` is left alone."""
    if "PYTHONMALLOC" in os.environ or sys.platform != "linux":
        return
    os.environ["PYTHONMALLOC"] = "malloc"
    os.execv(sys.executable, [sys.executable, "-m", "services.xmpp", *sys.argv[1:]])


GC_THRESHOLDS = (10000, 10, 100)
"""The collector's thresholds in the broker (CPython's default: 700, 10, 10). A full collection
walks every object alive, including the elements of stanzas still arriving (up to
``limits.max-pending-elements`` of them, each an object and its list of children): with the
default thresholds one ran every ~70,000 allocations and took 50-180 ms on a loaded machine while
a guest held partial stanzas, a stall for every client. Young collections every 10,000
allocations and full ones ten times rarer keep the pauses off the clients' latency; cycles are
rare in the broker (the parser's is broken by hand when a stream closes)."""


def tune_collector() -> None:
    freeze_heap()  # what the broker has built at start is never garbage: out of every walk
    gc.set_threshold(*GC_THRESHOLDS)


def main() -> None:
    _use_c_allocator()
    parser = argparse.ArgumentParser(prog="python -m services.xmpp", description=__doc__)
    parser.add_argument("--config", default=os.environ.get("XMPP_CONFIG"), help="operator HOCON file")
    args = parser.parse_args()
    setup_logging("xmpp")
    cfg = load_or_exit(lambda: load(args.config), "xmpp")

    async def serve() -> None:
        server = XmppServer(cfg)
        await server.start()
        tune_collector()
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    run(serve)


if __name__ == "__main__":
    main()
