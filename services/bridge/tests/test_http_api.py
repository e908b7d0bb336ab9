"""The bridge's private HTTP routes (http_api.PrivateApi) on a real Bridge, without sockets."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.bridge import config
from services.bridge.app import Bridge


def client() -> tuple[Bridge, TestClient]:
    bridge = Bridge(config.load(environ={}))
    return bridge, TestClient(bridge.api.app())


def test_health_follows_the_bridge_status() -> None:
    bridge, http = client()
    assert http.get("/about/health").json() == {"error": "starting"}
    bridge.status.started = True
    assert http.get("/about/health").status_code == 200
    bridge.status.healthy, bridge.status.unhealthy_reason = False, "no packets"
    assert http.get("/about/health").json() == {"error": "no packets"}


def test_drain_and_graceful_shutdown_refuse_new_conferences_only_when_shutting_down() -> None:
    bridge, http = client()
    assert http.post("/colibri/drain/enable").json() == {"drain": True} and bridge.status.drain
    assert http.get("/colibri/drain").json() == {"drain": True}
    body = {"contents": [{"name": "audio", "channels": [{"endpoint": "e"}]}]}
    assert http.post("/colibri/conferences", json=body).status_code == 200  # drain: still accepted
    assert http.post("/colibri/shutdown", json={"graceful-shutdown": "yes"}).status_code == 400
    answer = http.post("/colibri/shutdown", json={"graceful-shutdown": True}).json()
    assert answer == {"graceful-shutdown": True, "shutting-down": False}
    refused = http.post("/colibri/conferences", json=body)
    assert refused.status_code == 503 and refused.json() == {"error": "bridge is in graceful shutdown"}
    assert not bridge.shutdown_requested.is_set()
    http.post("/colibri/shutdown", json={"graceful-shutdown": False})
    assert bridge.shutdown_requested.is_set() and bridge.status.shutting_down
    bridge.colibri.expire_all()


def test_debug_shows_a_conference_and_its_endpoint() -> None:
    bridge, http = client()
    created = http.post(
        "/colibri/conferences", json={"contents": [{"name": "audio", "channels": [{"endpoint": "e"}]}]}
    )
    cid = created.json()["id"]
    debug = http.get("/debug").json()
    [conf] = [c for c in debug["conferences"] if c["id"] == cid]
    assert [e["id"] for e in conf["endpoints"]] == ["e"] and conf["endpoints"][0]["bridge_channel"] is None
    bridge.colibri.expire_all()
    assert http.get("/colibri/conferences").json() == []
