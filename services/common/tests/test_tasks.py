"""Background tasks: held until done, failures logged once with their purpose, cancelled on close."""

from __future__ import annotations

import asyncio
import logging

from services.common.tasks import Background


async def test_a_failure_is_logged_with_what_the_task_was_for(caplog) -> None:
    background = Background(logging.getLogger("test.tasks"))

    async def fails() -> None:
        raise ValueError("boom")

    background.spawn(fails(), "jingle to alice")
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(background) == 0
    assert [r.getMessage() for r in caplog.records] == ["jingle to alice failed"]


async def test_close_cancels_what_is_still_running() -> None:
    background = Background(logging.getLogger("test.tasks"))
    started = asyncio.Event()
    cancelled = []

    async def waits() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    background.spawn(waits(), "wait")
    await started.wait()
    assert len(background) == 1
    await background.close()
    assert cancelled == [True] and len(background) == 0
