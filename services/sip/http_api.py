"""The gateway's private HTTP API: health, metrics, calls, registrations, WebSocket admin."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.common import ws_admin_http
from services.common.runtime import metrics_body
from services.common.ws_admin import WsAdmin

from .core import SipCore


def create_app(core: SipCore, admin: WsAdmin, ports: dict[str, int], media_view: Any = None) -> FastAPI:
    app = FastAPI(title="Parley SIP gateway", docs_url=None, redoc_url=None, openapi_url=None)

    def health() -> Response:
        return JSONResponse({"status": "ok", "calls": len(core.calls), "ports": ports})

    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/about/health", health, methods=["GET"])

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = metrics_body()
        return Response(body, media_type=content_type)

    @app.get("/calls")
    def calls() -> list[dict[str, object]]:
        now = time.monotonic()
        out = []
        for call in core.calls.values():
            item: dict[str, object] = {
                "call_id": call.call_id, "room": call.room, "display_name": call.display_name,
                "state": call.state, "transport": call.flow.transport, "flow": call.flow.token,
                "remote": f"{call.flow.host}:{call.flow.port}", "age": round(now - call.created, 1),
            }
            if media_view is not None:
                item.update(media_view(call.key))
            out.append(item)
        return out

    @app.get("/registrations")
    def registrations() -> list[dict[str, object]]:
        now = time.monotonic()
        return [
            {"aor": b.aor, "contact": b.contact, "expires": int(b.expires_at - now), "flow": b.flow.token,
             "transport": b.flow.transport, "instance": b.instance, "reg_id": b.reg_id}
            for bindings in core.bindings.values() for b in bindings
        ]

    @app.api_route("/admin/ws/{rest:path}", methods=["GET", "POST"])
    async def ws_admin(rest: str, request: Request) -> Response:
        body = await request.body()
        status, payload = ws_admin_http.handle(
            admin, request.method, ws_admin_http.PREFIX + rest, dict(request.query_params), body,
            time.monotonic(),
        )
        return JSONResponse(payload, status_code=status)

    return app
