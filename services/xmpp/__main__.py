"""``python -m services.xmpp [--config FILE]``: the Parley XMPP broker."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ..common.config import load_or_exit
from ..common.logging import setup_logging
from ..common.runtime import run
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
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    run(serve)


if __name__ == "__main__":
    main()
