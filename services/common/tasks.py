"""Work a service starts and does not wait for (a Jingle send, a room rejoin, a status update).

asyncio keeps only a weak reference to a task, so one nobody holds can vanish mid-way; and a task's
exception is otherwise reported only when it is garbage-collected, if ever. :class:`Background` holds
each task until it is done, logs a failure once with what the task was for, and cancels what is left
when the service closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any


class Background:
    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``coro`` in the background; ``what`` names it in the log line if it fails."""

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s failed", what)

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every task still running and wait for them to finish."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
