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


class RateLimitedLogger:
    """At most one line per ``key`` every ``interval`` seconds; the next line says how many were
    held back. For input a peer controls (a bad packet, a hostile stanza), so a flood of it writes
    a line now and then, not a line (or a traceback) per packet. Bounded: at most ``max_keys``
    keys are remembered."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, max_keys: int = 1024) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}

    def log(self, level: int, key: object, msg: str, *args: object) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self.max_keys:
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            msg += " (%d more like it held back)"
            args = (*args, held)
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: object, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: object, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, key, msg, *args)
