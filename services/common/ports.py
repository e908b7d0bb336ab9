"""Ports given as a number or a range, and claiming one free *slot* across several ranges.

``docker compose up --scale bridge=N`` runs N bridges on the host's network stack: each takes the
first slot ``i`` for which every one of its ranges has port ``first + i`` free (UDP media, private
REST, public WebSocket), by binding the sockets and keeping them — no check-then-bind race between
replicas starting together. A single port (``"10000"``) is a range of one.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    @classmethod
    def parse(cls, text: str | int) -> PortRange:
        """``"10000"``, ``10000`` or ``"10000-10019"``; raises ValueError with the reason."""
        if isinstance(text, int):
            first = last = text
        else:
            parts = str(text).strip().split("-")
            if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"not a port or a port range like 10000-10019: {text!r}")
            first, last = int(parts[0]), int(parts[-1])
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"ports must be 1..65535 with first <= last: {text!r}")
        return cls(first, last)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class PortRequest:
    """One socket to claim: its kind (``socket.SOCK_STREAM``/``SOCK_DGRAM``), host and range."""

    host: str
    ports: PortRange
    kind: int = socket.SOCK_STREAM


def _bind(req: PortRequest, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in req.host else socket.AF_INET
    sock = socket.socket(family, req.kind)
    try:
        if req.kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((req.host, port))
        if req.kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
        return sock
    except OSError:
        sock.close()
        raise


def claim_slot(requests: list[PortRequest]) -> tuple[int, list[socket.socket]]:
    """Bind every request at the first common slot; returns (slot, bound sockets in request order).

    Raises OSError naming the ranges when no slot is free in all of them.
    """
    slots = min(r.ports.size for r in requests)
    for slot in range(slots):
        bound: list[socket.socket] = []
        try:
            for req in requests:
                bound.append(_bind(req, req.ports.first + slot))
        except OSError:
            for sock in bound:
                with contextlib.suppress(OSError):
                    sock.close()
            continue
        return slot, bound
    wanted = ", ".join(
        f"{'UDP' if r.kind == socket.SOCK_DGRAM else 'TCP'} {r.host}:{r.ports}" for r in requests
    )
    raise OSError(f"no free port slot in {wanted}")
