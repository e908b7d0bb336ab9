"""Colibri REST v1 (docs/protocols.md#colibri-rest) on FastAPI: ``/colibri/conferences`` and ``/colibri/conferences/{id}``.

Bodies are read raw and parsed with :func:`services.common.colibri.parse_conference`, so a bad body
gets ``400 {"error": ..., "field": ...}`` naming the field (not FastAPI's generic 422); an unknown
conference gets 404; a bridge in graceful shutdown refuses new conferences with 503.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.common.colibri import ColibriFormatError, parse_conference

from .conferences import ColibriRequestError, UnknownConference
from .service import ColibriService


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, str] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def colibri_router(service: ColibriService, accepting_conferences: Callable[[], str | None]) -> APIRouter:
    """``accepting_conferences()`` returns None, or why new conferences are refused (-> 503)."""
    router = APIRouter()

    def guarded(fn: Callable[[], object]) -> JSONResponse:
        try:
            return JSONResponse(fn())
        except (ColibriFormatError, ColibriRequestError) as exc:
            return error(400, str(exc), exc.field)
        except UnknownConference as exc:
            return error(404, str(exc))

    @router.get("/colibri/conferences")
    @router.get("/colibri/conferences/", include_in_schema=False)
    async def list_conferences() -> JSONResponse:
        return JSONResponse(service.list_conferences())

    @router.post("/colibri/conferences")
    @router.post("/colibri/conferences/", include_in_schema=False)
    async def create_conference(request: Request) -> JSONResponse:
        refusal = accepting_conferences()
        if refusal:
            return error(503, refusal)
        body = await request.body()
        return guarded(lambda: service.create_conference(parse_conference(body)))

    @router.get("/colibri/conferences/{conference_id}")
    async def get_conference(conference_id: str) -> JSONResponse:
        return guarded(lambda: service.get_conference(conference_id))

    @router.patch("/colibri/conferences/{conference_id}")
    async def patch_conference(conference_id: str, request: Request) -> JSONResponse:
        body = await request.body()
        return guarded(lambda: service.patch_conference(conference_id, parse_conference(body)))

    @router.delete("/colibri/conferences/{conference_id}")
    async def delete_conference(conference_id: str) -> Response:
        """Expire the conference now (Colibri v1 only expires channels; the focus ends a
        conference nobody is in with this, as colibri2's conference ``expire`` does)."""
        try:
            service.expire_conference(conference_id)
        except UnknownConference as exc:
            return error(404, str(exc))
        return Response(status_code=204)

    return router
