"""The HTTP app in-process (ASGI, no sockets): page, config.js, assets, health, metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.web.app import DistMissing, create_app
from services.web.config import load


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>Parley</title>")
    (tmp_path / "assets" / "app.js").write_text("console.log('parley')")
    (tmp_path / "BUILD").write_text("abc123\n")
    return tmp_path


def client_for(dist: Path, **env: str) -> TestClient:
    return TestClient(create_app(load(environ={"WEB_DIST_DIR": str(dist), **env})))


def test_rooms_serve_the_page_uncached(dist: Path) -> None:
    client = client_for(dist)
    for path in ("/", "/weekly-standup", "/Team%20Sync"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<title>Parley</title>" in response.text
        assert response.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_assets_and_unknown_files(dist: Path) -> None:
    client = client_for(dist)
    asset = client.get("/assets/app.js")
    assert asset.text == "console.log('parley')"
    assert asset.headers["cache-control"] == "public, max-age=86400"
    assert client.get("/assets/missing.js").status_code == 404
    assert client.get("/favicon.ico").status_code == 404


def test_config_js_reflects_settings(dist: Path) -> None:
    client = client_for(dist, PUBLIC_URL="https://meet.example.com")
    response = client.get("/config.js")
    assert response.headers["content-type"].startswith("application/javascript")
    assert '"websocket": "wss://meet.example.com/xmpp-websocket"' in response.text


def test_health_and_metrics(dist: Path) -> None:
    client = client_for(dist)
    assert client.get("/health").json() == {"status": "ok", "build": "abc123"}
    client.get("/room")
    metrics = client.get("/metrics").text
    assert "parley_web_page_views_total" in metrics


def test_refuses_to_start_without_a_build(tmp_path: Path) -> None:
    with pytest.raises(DistMissing, match=r"build\.sh"):
        create_app(load(environ={"WEB_DIST_DIR": str(tmp_path)}))


def _connect_src(csp: str) -> list[str]:
    directive = next(d.strip() for d in csp.split(";") if d.strip().startswith("connect-src"))
    return directive.split()[1:]


def test_csp_connects_to_own_and_configured_origins_only(dist: Path) -> None:
    plain = _connect_src(client_for(dist).get("/room").headers["content-security-policy"])
    assert plain == ["'self'"]
    public = client_for(dist, PUBLIC_URL="https://meet.example.com").get("/room")
    sources = _connect_src(public.headers["content-security-policy"])
    assert sources == ["'self'", "wss://meet.example.com", "https://meet.example.com"]
    extra = client_for(
        dist,
        XMPP_WEBSOCKET_URL="ws://127.0.0.1:5280/xmpp-websocket",
        WEB_CONNECT_ORIGINS="wss://jvb1.example.org, ws://127.0.0.1:*",
    ).get("/room")
    sources = _connect_src(extra.headers["content-security-policy"])
    assert sources == ["'self'", "ws://127.0.0.1:5280", "wss://jvb1.example.org", "ws://127.0.0.1:*"]
    for sources in (plain, _connect_src(public.headers["content-security-policy"])):
        assert not {"ws:", "wss:", "*", "http:", "https:"} & set(sources)


@pytest.mark.parametrize("origin", ["ws:", "*", "wss://a.example/path", "javascript:alert(1)", "wss://x y"])
def test_connect_origins_must_be_origins(dist: Path, origin: str) -> None:
    with pytest.raises(Exception, match="connect-origins"):
        load(environ={"WEB_DIST_DIR": str(dist), "WEB_CONNECT_ORIGINS": origin})


def test_config_js_names_the_focus_nick(dist: Path) -> None:
    assert '"focusNick": "focus"' in client_for(dist).get("/config.js").text
