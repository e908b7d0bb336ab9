"""The media engine alone in a process, with a small JSON control API (test and benchmark support).

This runs the same :class:`MediaEngine` the bridge runs, without Colibri, XMPP or the bridge
channel, so the packet path can be tested and benchmarked by itself::

    MEDIA_HTTP_PORT=18080 JVB_PORT=20000 python -m tests.integration.media_devserver

``POST /conferences/{c}/endpoints/{e}`` -> the endpoint's LocalTransport;
``PUT .../transport`` (RemoteTransport JSON), ``PUT .../sources`` (MediaSources JSON),
``DELETE .../endpoints/{e}``, ``DELETE /conferences/{c}``, ``GET /stats`` (MediaStats plus the
process CPU time), ``GET /health``. Settings come from the environment: ``JVB_PORT``,
``JVB_BIND_ADDRESS``, ``JVB_ADVERTISE_IPS`` (comma separated), ``MEDIA_CONSENT_TIMEOUT``,
``MEDIA_HTTP_PORT``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import TypeAdapter, ValidationError

from services.bridge.media.engine import MediaConfig, MediaEngine, UnknownEndpoint
from services.bridge.media.model import MediaSources, RemoteTransport
from services.common.config import ConfigError, split_list
from services.common.logging import setup_logging
from services.common.runtime import freeze_heap, run, serve_http, stop_http

log = logging.getLogger("parley.bridge.media")

_remote = TypeAdapter(RemoteTransport)
_sources = TypeAdapter(MediaSources)


def config_from_env(environ: dict[str, str] | os._Environ[str]) -> tuple[MediaConfig, int]:
    def number(name: str, default: str, kind: type = int) -> Any:
        raw = environ.get(name, default)
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(name, f"not a number: {raw!r}", env=name) from None

    config = MediaConfig(
        port=number("JVB_PORT", "10000"),
        bind_address=environ.get("JVB_BIND_ADDRESS", "127.0.0.1"),
        advertise_ips=tuple(split_list(environ.get("JVB_ADVERTISE_IPS", ""))),
        consent_timeout=number("MEDIA_CONSENT_TIMEOUT", "30", float),
        connect_timeout=number("MEDIA_CONNECT_TIMEOUT", "30", float),
    )
    return config, number("MEDIA_HTTP_PORT", "18080")


def build_app(engine: MediaEngine) -> FastAPI:
    app = FastAPI(title="parley media engine")

    def unknown(exc: UnknownEndpoint) -> HTTPException:
        return HTTPException(404, str(exc))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"port": engine.port}

    @app.post("/conferences/{conference_id}/endpoints/{endpoint_id}")
    def create(conference_id: str, endpoint_id: str) -> dict[str, Any]:
        return dataclasses.asdict(engine.create_endpoint(conference_id, endpoint_id))

    @app.put("/conferences/{conference_id}/endpoints/{endpoint_id}/transport")
    def transport(conference_id: str, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            engine.set_remote_transport(conference_id, endpoint_id, _remote.validate_python(body))
        except UnknownEndpoint as exc:
            raise unknown(exc) from exc
        except (ValidationError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from exc
        return {}

    @app.put("/conferences/{conference_id}/endpoints/{endpoint_id}/sources")
    def sources(conference_id: str, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            engine.set_sources(conference_id, endpoint_id, _sources.validate_python(body))
        except UnknownEndpoint as exc:
            raise unknown(exc) from exc
        except ValidationError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {}

    @app.delete("/conferences/{conference_id}/endpoints/{endpoint_id}")
    def expire(conference_id: str, endpoint_id: str) -> dict[str, Any]:
        engine.expire_endpoint(conference_id, endpoint_id)
        return {}

    @app.delete("/conferences/{conference_id}")
    def expire_conference(conference_id: str) -> dict[str, Any]:
        engine.expire_conference(conference_id)
        return {}

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        body = dataclasses.asdict(engine.stats())
        body["conference_ids"] = engine.conference_ids()
        body["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        body["max_rss_kb"] = usage.ru_maxrss
        body["rss_kb"] = _current_rss_kb()
        body["monotonic"] = time.monotonic()
        return body

    return app


def _current_rss_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return 0


async def main() -> None:
    config, http_port = config_from_env(os.environ)
    engine = MediaEngine(config)
    engine.on_endpoint_state = lambda c, e, s: log.info("endpoint %s conference=%s endpoint=%s", s, c, e)
    await engine.start()
    server = await serve_http(build_app(engine), "127.0.0.1", http_port)
    freeze_heap()
    try:
        await server._parley_task  # type: ignore[attr-defined]
    finally:
        await stop_http(server)
        await engine.stop()


if __name__ == "__main__":
    setup_logging("bridge-media")
    try:
        run(main)
    except ConfigError as exc:
        raise SystemExit(f"bridge-media: {exc}") from exc
