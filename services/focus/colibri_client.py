"""Colibri REST client (Colibri REST v1, docs/protocols.md#colibri-rest) over one shared ``httpx.AsyncClient``; bodies are the shared models."""

from __future__ import annotations

import httpx

from services.common import colibri


class ColibriError(Exception):
    """A Colibri request failed. ``unreachable`` means the bridge could not be reached at all
    (connection refused/reset, timeout) - the bridge should be treated as failed."""

    def __init__(self, message: str, *, unreachable: bool = False, status: int | None = None) -> None:
        self.unreachable = unreachable
        self.status = status
        super().__init__(message)


class ColibriClient:
    def __init__(self, timeout: float = 5.0) -> None:
        self._http = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, url: str, body: colibri.Conference | None = None) -> httpx.Response:
        try:
            response = await self._http.request(
                method, url, json=colibri.dump(body) if body is not None else None
            )
        except (
            httpx.ConnectError,
            httpx.ReadError,
            httpx.RemoteProtocolError,
            httpx.TimeoutException,
        ) as exc:
            raise ColibriError(f"{method} {url}: {type(exc).__name__}: {exc}", unreachable=True) from exc
        except httpx.HTTPError as exc:
            raise ColibriError(f"{method} {url}: {exc}") from exc
        if response.status_code >= 400:
            raise ColibriError(
                f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}",
                status=response.status_code,
                unreachable=response.status_code >= 500,
            )
        return response

    async def _conference(
        self, method: str, url: str, body: colibri.Conference | None = None
    ) -> colibri.Conference:
        response = await self._send(method, url, body)
        try:
            return colibri.parse_conference(response.content)
        except colibri.ColibriFormatError as exc:
            raise ColibriError(f"{method} {url}: bad Colibri response: {exc}") from exc

    async def create(self, base: str, body: colibri.Conference) -> colibri.Conference:
        """POST /colibri/conferences (creates a conference, optionally with channels)."""
        return await self._conference("POST", f"{base}/colibri/conferences", body)

    async def patch(self, base: str, body: colibri.Conference) -> colibri.Conference:
        """PATCH /colibri/conferences/{id}."""
        return await self._conference("PATCH", f"{base}/colibri/conferences/{body.id}", body)

    async def expire(self, base: str, conference_id: str) -> None:
        """DELETE /colibri/conferences/{id}: the bridge frees the conference now."""
        await self._send("DELETE", f"{base}/colibri/conferences/{conference_id}")

    async def get(self, base: str, conference_id: str) -> colibri.Conference:
        return await self._conference("GET", f"{base}/colibri/conferences/{conference_id}")

    async def list_ids(self, base: str) -> list[str]:
        response = await self._send("GET", f"{base}/colibri/conferences")
        try:
            return [colibri.ConferenceRef.model_validate(item).id for item in response.json()]
        except (ValueError, TypeError) as exc:
            raise ColibriError(f"GET {base}/colibri/conferences: bad response: {exc}") from exc

    async def health(self, base: str, within: float) -> tuple[bool, bool, str]:
        """GET /about/health: ``(healthy, refused, reason)``."""
        try:
            response = await self._http.get(f"{base}/about/health", timeout=within)
        except httpx.ConnectError as exc:
            return False, True, f"connect: {exc}"
        except httpx.HTTPError as exc:
            return False, False, f"{type(exc).__name__}: {exc}"
        if response.status_code == 200:
            return True, False, ""
        return False, False, f"HTTP {response.status_code}: {response.text[:200]}"
