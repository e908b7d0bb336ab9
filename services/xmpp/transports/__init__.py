"""Thin I/O adapters that feed the sans-I/O session: TCP c2s, HTTP (WebSocket, BOSH, admin)."""

from __future__ import annotations

import asyncio
from typing import Any


def stop_reading(transport: Any) -> None:
    """Read no more from a connection that is refused or closing. uvloop starts reading an
    accepted connection after its protocol's ``connection_made`` returns, so a ``pause_reading``
    there does not hold: it is repeated on the next loop turn, and on any data that still arrives
    (at most one read's worth); otherwise the connection is read, and its data dropped, as fast
    as the client sends."""
    if transport is None or transport.is_closing():
        return
    transport.pause_reading()
    asyncio.get_running_loop().call_soon(_pause_again, transport)


def _pause_again(transport: Any) -> None:
    if not transport.is_closing() and transport.is_reading():
        transport.pause_reading()
