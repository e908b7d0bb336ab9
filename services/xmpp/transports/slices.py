"""Heavy input parsed in slices under a time budget per event-loop turn (see ``tcp.py``)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol


class Sliced(Protocol):
    def next_slice(self) -> bool:
        """Parse one slice of the backlog; True if more is left."""
        ...


class SliceScheduler:
    """Round-robin over connections with a backlog, at most ``budget`` seconds of parsing per
    event-loop turn (at least one slice), so heavy input is spread over turns."""

    def __init__(self, budget: float = 0.004) -> None:
        self.budget = budget
        self.queue: deque[Sliced] = deque()
        self.scheduled = False

    def add(self, conn: Sliced) -> None:
        self.queue.append(conn)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.run)

    def run(self) -> None:
        self.scheduled = False
        start = time.perf_counter()
        queue = self.queue
        while queue:
            conn = queue.popleft()
            if conn.next_slice():
                queue.append(conn)
            if time.perf_counter() - start > self.budget:
                break
        if queue:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.run)
