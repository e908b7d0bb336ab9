"""The shared process runtime: HTTP servers inside the loop, their housekeeping, heap freezing."""

from __future__ import annotations

import asyncio
import gc
import socket
from email.utils import parsedate_to_datetime

import httpx
from fastapi import FastAPI

from services.common import runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


async def test_server_answers_with_a_date_header_and_stops_on_request() -> None:
    port = _free_port()
    server = await runtime.serve_http(_app(), "127.0.0.1", port)
    task = server._parley_task  # type: ignore[attr-defined]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            reply = await http.get("/ping")
        assert reply.json() == {"pong": "yes"}
        assert parsedate_to_datetime(reply.headers["date"]).year >= 2024
        assert not task.done()
    finally:
        await runtime.stop_http(server)
    assert task.done() and not task.cancelled()


async def test_housekeeping_refreshes_the_date_header_each_interval(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(runtime, "HOUSEKEEPING_INTERVAL", 0.01)
    server = await runtime.serve_http(_app(), "127.0.0.1", _free_port())
    try:
        server.server_state.default_headers = []
        for _ in range(1000):  # poll: the housekeeping task puts the header back
            if any(name == b"date" for name, _ in server.server_state.default_headers):
                break
            await asyncio.sleep(0.01)
        assert any(name == b"date" for name, _ in server.server_state.default_headers)
    finally:
        await runtime.stop_http(server)


def test_freeze_heap_moves_live_objects_out_of_collection() -> None:
    try:
        kept = [object() for _ in range(10)]  # noqa: F841 - alive across the freeze
        runtime.freeze_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # this test process has at least the imported modules' objects
        assert gc.get_count()[0] < 100  # freeze_heap collected first; the young generation is empty
    finally:
        gc.unfreeze()
