"""Where conference state lives: in memory, or in Redis so a restarted focus resumes its conferences.

Redis layout: one hash ``parley:focus:conferences``, field = room JID, value = the conference as
JSON (:class:`~.conference.Conference`). Written after every change of a conference, deleted when
it ends.
"""

from __future__ import annotations

import logging
from typing import Protocol

from pydantic import ValidationError

from .conference import Conference

log = logging.getLogger("focus.store")

REDIS_KEY = "parley:focus:conferences"


class ConferenceStore(Protocol):
    async def save(self, conf: Conference) -> None: ...
    async def delete(self, room: str) -> None: ...
    async def load_all(self) -> list[Conference]: ...
    async def close(self) -> None: ...


class MemoryStore:
    """Nothing survives the process: the conferences dict of the focus is the state."""

    async def save(self, conf: Conference) -> None:
        return None

    async def delete(self, room: str) -> None:
        return None

    async def load_all(self) -> list[Conference]:
        return []

    async def close(self) -> None:
        return None


class RedisStore:
    def __init__(self, url: str, key: str = REDIS_KEY) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self.key = key

    async def save(self, conf: Conference) -> None:
        await self._redis.hset(self.key, conf.room, conf.model_dump_json())

    async def delete(self, room: str) -> None:
        await self._redis.hdel(self.key, room)

    async def load_all(self) -> list[Conference]:
        out = []
        for room, raw in (await self._redis.hgetall(self.key)).items():
            try:
                out.append(Conference.model_validate_json(raw))
            except ValidationError as exc:
                log.error("stored conference %r is unreadable, left in place and skipped: %s", room, exc)
        return out

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def open_store(url: str) -> ConferenceStore:
    return RedisStore(url) if url else MemoryStore()
