"""The web service's HTTP app: the built page, ``config.js``, ``/health`` and ``/metrics``.

Any path that is not an asset serves the page, so ``/<room>`` opens that meeting (as Jitsi Meet
does). Assets carry a content hash in their URL and may be cached; the page and ``config.js``
may not.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import Counter

from services.common.runtime import metrics_body
from services.web.config import Web, config_js

PAGE_VIEWS = Counter("parley_web_page_views_total", "Meeting pages served")
CONFIG_VIEWS = Counter("parley_web_config_js_total", "config.js served")

NO_STORE = {"Cache-Control": "no-store"}


def content_security_policy(web: Web) -> str:
    """The page loads nothing but its own files. It talks XMPP and the bridge channel over
    WebSockets to its own origin (nginx routes ``/xmpp-websocket`` and ``/colibri-ws/``) and to
    the origins its settings name (``Web.connect_src``), never to any host: a forged Jingle
    offer naming an attacker's bridge-channel URL cannot be followed even if it got through."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {' '.join(web.connect_src())}; media-src 'self' blob:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )

# Asset URLs carry the build's content hash (``?v=``), so a browser may keep them.
ASSET_CACHE = "public, max-age=86400"


class DistMissing(RuntimeError):
    """The client was not built (``services/web/build.sh``)."""


def check_dist(dist: Path) -> None:
    if not (dist / "index.html").is_file() or not (dist / "assets").is_dir():
        raise DistMissing(f"no built client in {dist}: run services/web/build.sh first")


def create_app(web: Web) -> FastAPI:
    dist = web.dist
    check_dist(dist)
    index = dist / "index.html"
    script = config_js(web)
    page_headers = {**NO_STORE, "Content-Security-Policy": content_security_policy(web)}
    build = (dist / "BUILD").read_text().strip() if (dist / "BUILD").exists() else "dev"
    app = FastAPI(title="parley-web", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = index.is_file()
        return JSONResponse(
            {"status": "ok" if ok else "dist missing", "build": build}, status_code=200 if ok else 503
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = metrics_body()
        return Response(body, media_type=content_type)

    @app.get("/config.js")
    async def config() -> Response:
        CONFIG_VIEWS.inc()
        return Response(script, media_type="application/javascript", headers=NO_STORE)

    app.mount("/assets", StaticFiles(directory=dist / "assets"), name="assets")

    @app.middleware("http")
    async def asset_caching(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        if request.url.path.startswith("/assets/") and response.status_code == 200:
            response.headers["Cache-Control"] = ASSET_CACHE
        return response

    @app.get("/{path:path}")
    async def page(path: str, request: Request) -> Response:
        if "." in path.rsplit("/", 1)[-1]:
            return Response("not found\n", status_code=404, media_type="text/plain")
        PAGE_VIEWS.inc()
        return FileResponse(index, media_type="text/html", headers=page_headers)

    return app
