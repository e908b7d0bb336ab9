"""The focus's HTTP API (Jicofo's port 8888): health, conferences, bridges, metrics, debug."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from services.common.runtime import metrics_body

from .focus import Focus


def create_app(
    focus: Focus, xmpp_ready: Callable[[], bool], xmpp_stats: Callable[[], dict[str, object]] | None = None
) -> FastAPI:
    app = FastAPI(title="Parley focus", docs_url=None, redoc_url=None, openapi_url=None)

    def health() -> Response:
        if not xmpp_ready():
            return JSONResponse({"status": "unhealthy", "reason": "no XMPP session"}, status_code=503)
        return JSONResponse({"status": "ok"})

    app.add_api_route("/about/health", health, methods=["GET"])
    app.add_api_route("/health", health, methods=["GET"])

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = metrics_body()
        return Response(body, media_type=content_type)

    @app.get("/conferences")
    def conferences() -> list[dict[str, object]]:
        return focus.conferences_view()

    @app.get("/bridges")
    def bridges() -> list[dict[str, object]]:
        return focus.bridges_view()

    @app.get("/recordings")
    def recordings() -> dict[str, object]:
        return focus.jibri.view()

    @app.get("/debug")
    def debug() -> dict[str, object]:
        return {
            "xmpp_ready": xmpp_ready(),
            "xmpp": xmpp_stats() if xmpp_stats else None,
            "conferences_expired": focus.conferences_expired,
            "conference_requests_refused": focus.requests_refused,
            "conferences": focus.conferences_view(),
            "bridges": focus.bridges_view(),
        }

    return app
