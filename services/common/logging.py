"""One log line per event, prefixed with the service name, on stderr.

Format: ``2026-11-21T12:00:00.123Z jvb1 INFO bridge.colibri: conference created id=ab12``.
Tracebacks are folded onto the same line (``\\n`` shown as `` | ``) so a supervisor, ``grep`` or a
log shipper never splits one event in two. ``LOG_LEVEL`` sets the level (default INFO).
"""

from __future__ import annotations

import logging
import os
import sys
import time


class OneLineFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]

    def __init__(self, service: str) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03dZ " + service + " %(levelname)s %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", " | ")


def setup_logging(service: str, level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
    # Third-party chatter that is one line per packet or per request at INFO.
    for noisy in ("aioice", "aiortc", "slixmpp", "uvicorn.access", "httpx", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
