"""The recorder's HTTP API: health, metrics, and the recordings with their files."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse

from services.common.runtime import metrics_body

from .service import Recorder


def create_app(recorder: Recorder, xmpp_ready: Callable[[], bool]) -> FastAPI:
    app = FastAPI(title="Parley recorder", docs_url=None, redoc_url=None, openapi_url=None)

    def health() -> Response:
        if not xmpp_ready():
            return JSONResponse({"status": "unhealthy", "reason": "no XMPP session"}, status_code=503)
        return JSONResponse({"status": "ok", "active": len(recorder.recordings)})

    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/about/health", health, methods=["GET"])

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = metrics_body()
        return Response(body, media_type=content_type)

    @app.get("/recordings")
    def recordings() -> list[dict[str, object]]:
        return recorder.view()

    @app.get("/recordings/{session_id}")
    def recording(session_id: str) -> dict[str, object]:
        for view in recorder.view():
            if view.get("session_id") == session_id:
                return view
        raise HTTPException(404, "no such recording")

    return app
