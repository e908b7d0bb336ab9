"""``python -m services.web``: serve the meeting page on $WEB_HTTP_HOST:$WEB_HTTP_PORT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from services.common.config import load_or_exit
from services.common.logging import setup_logging
from services.common.runtime import run, serve_http, stop_http
from services.web.app import DistMissing, create_app
from services.web.config import load

log = logging.getLogger("web")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.web", description=__doc__)
    parser.add_argument("--config", help="HOCON file overriding services/web/reference.conf")
    args = parser.parse_args()
    setup_logging("web")
    web = load_or_exit(lambda: load(args.config or os.environ.get("WEB_CONFIG")), "web")
    try:
        app = create_app(web)
    except DistMissing as exc:
        print(f"web: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc

    async def serve() -> None:
        server = await serve_http(app, web.http.host, web.http.port)
        log.info(
            "serving %s on http://%s:%d (xmpp %s, focus %s)",
            web.dist,
            web.http.host,
            web.http.port,
            web.websocket_url or "same origin",
            web.focus_address,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await stop_http(server)
            log.info("stopped")

    run(serve)


if __name__ == "__main__":
    main()
