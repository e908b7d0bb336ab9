"""XEP-0198 stream management: stanza counters, the unacknowledged queue, resumption tokens."""

from __future__ import annotations

import secrets
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .session import ClientSession

SM_NS = "urn:xmpp:sm:3"
_MOD = 2**32


class StreamManagement:
    """Counters of one managed stream (h values wrap at 2^32 as the XEP says)."""

    def __init__(self, resumable: bool, request_every: int = 5) -> None:
        self.handled_in = 0
        self.acked_out = 0
        self.unacked: deque[bytes] = deque()
        self.resumable = resumable
        self.token = secrets.token_urlsafe(18) if resumable else ""
        self.request_every = request_every
        self._since_request = 0

    def stanza_received(self) -> None:
        self.handled_in = (self.handled_in + 1) % _MOD

    def stanza_sent(self, data: bytes) -> bool:
        """Queue an outgoing stanza; True when it is time to request an ack."""
        self.unacked.append(data)
        self._since_request += 1
        if self._since_request >= self.request_every:
            self._since_request = 0
            return True
        return False

    def ack(self, h: int) -> bool:
        """Drop what the peer has handled; False if ``h`` acknowledges more than was sent."""
        count = (h - self.acked_out) % _MOD
        if count > len(self.unacked):
            return False
        for _ in range(count):
            self.unacked.popleft()
        self.acked_out = h % _MOD
        return True

    def replay_after(self, h: int) -> list[bytes] | None:
        """On resumption: acknowledge up to ``h``, return what must be sent again."""
        if not self.ack(h):
            return None
        return list(self.unacked)


class ResumptionRegistry:
    """Detached sessions waiting to be resumed, by token."""

    def __init__(self) -> None:
        self.waiting: dict[str, ClientSession] = {}

    def park(self, token: str, session: ClientSession) -> None:
        self.waiting[token] = session

    def take(self, token: str) -> ClientSession | None:
        return self.waiting.pop(token, None)

    def drop(self, token: str, session: ClientSession) -> None:
        if self.waiting.get(token) is session:
            del self.waiting[token]
