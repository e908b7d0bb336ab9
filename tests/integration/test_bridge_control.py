"""Colibri REST against a running bridge: jitsi-videobridge's doc/rest-colibri.md examples replayed byte for byte, errors, expiry, ops."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.harness import REPO, free_port
from tests.integration.test_bridge_control_support import (
    EXAMPLE_CONFERENCE,
    SEED_ENDPOINT,
    IceDtlsPeer,
    RunningBridge,
    dumps,
    example,
    start_bridge,
)

FAST_EXPIRY = "videobridge.colibri { expire-check-interval = 200 ms, conference-idle-timeout = 2 seconds }\n"


@pytest.fixture(scope="module")
def bridge() -> Iterator[RunningBridge]:
    b = start_bridge("bridge-rest", FAST_EXPIRY)
    try:
        yield b
    finally:
        b.process.stop()


@pytest.fixture
def http(bridge: RunningBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.url, timeout=10) as client:
        yield client


def replay_allocation(http: httpx.Client) -> tuple[str, dict]:
    """The Colibri REST join example, steps 1-4: POST "[]", then the allocation PATCH with the conference id it got."""
    r = http.post("/colibri/conferences/", content=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    created = r.json()
    assert list(created) == ["id"]
    cid = created["id"]
    body = example("rest_colibri_allocate_patch.json").replace(EXAMPLE_CONFERENCE, cid.encode())
    r = http.patch(f"/colibri/conferences/{cid}", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    return cid, r.json()


def answer_body(cid: str, allocated: dict, transport: dict | None = None) -> bytes:
    """The Colibri REST join example, step 6 with the ids this bridge assigned (and optionally a real transport)."""
    audio, video, data = allocated["contents"]
    body = example("rest_colibri_answer_patch.json").replace(EXAMPLE_CONFERENCE, cid.encode())
    body = body.replace(b"e4023f2a35c47d57", audio["channels"][0]["id"].encode())
    body = body.replace(b"f52e248a094d3334", video["channels"][0]["id"].encode())
    body = body.replace(b"5c258c1a66d1c021", data["sctpconnections"][0]["id"].encode())
    if transport is None:
        return body
    import json

    obj = json.loads(body)
    obj["channel-bundles"][0]["transport"] = transport
    return dumps(obj)


def test_documented_example_replayed_step_by_step(bridge: RunningBridge, http: httpx.Client) -> None:
    cid, out = replay_allocation(http)
    # step 4's response shape
    assert out["id"] == cid
    assert [c["name"] for c in out["contents"]] == ["audio", "video", "data"]
    audio = out["contents"][0]["channels"][0]
    for key in (
        "id",
        "endpoint",
        "channel-bundle-id",
        "expire",
        "initiator",
        "direction",
        "rtp-level-relay-type",
        "sources",
    ):
        assert key in audio
    assert audio["endpoint"] == SEED_ENDPOINT and audio["rtp-level-relay-type"] == "mixer"
    # a mixer channel receives one mixed stream; its SSRC is the channel's sources (Colibri REST v1 join example, step 4)
    assert len(audio["sources"]) == 1 and 0 < audio["sources"][0] < 2**32
    video = out["contents"][1]["channels"][0]
    assert video["last-n"] == 2 and video["rtp-level-relay-type"] == "translator"
    sctp = out["contents"][2]["sctpconnections"][0]
    assert sctp["port"] == 5000 and sctp["expire"] == 20 and sctp["id"]
    (bundle,) = out["channel-bundles"]
    t = bundle["transport"]
    assert bundle["id"] == SEED_ENDPOINT
    assert t["xmlns"] == "urn:xmpp:jingle:transports:ice-udp:1" and t["rtcp-mux"] is True
    assert t["ufrag"] and t["pwd"]
    assert t["fingerprints"][0]["hash"] == "sha-256" and t["fingerprints"][0]["setup"] == "actpass"
    cand = t["candidates"][0]
    assert cand["ip"] == "127.0.0.1" and cand["port"] == bridge.udp_port and cand["protocol"] == "udp"
    for key in ("generation", "component", "foundation", "id", "priority", "type", "network"):
        assert key in cand
    assert t["web-socket"] == (
        f"ws://127.0.0.1:{bridge.public_port}/colibri-ws/{bridge.server_id}/{cid}/{SEED_ENDPOINT}?pwd={t['pwd']}"
    )
    # step 6: the answer patch (payload-types, sources, ssrc-groups, transport) is accepted
    r = http.patch(f"/colibri/conferences/{cid}", content=answer_body(cid, out))
    assert r.status_code == 200, r.text
    got = r.json()
    video = got["contents"][1]["channels"][0]
    assert video["ssrc-groups"] == [{"semantics": "FID", "sources": [2, 3]}]
    assert [pt["name"] for pt in video["payload-types"]] == ["H264", "VP8"]
    assert got["contents"][0]["channels"][0]["payload-types"][0]["parameters"] == {
        "minptime": 10,
        "useinbandfec": 1,
    }
    # GET shows the same conference; the list shows its id
    full = http.get(f"/colibri/conferences/{cid}").json()
    assert full["id"] == cid and full["channel-bundles"][0]["transport"]["ufrag"] == t["ufrag"]
    assert {"id": cid} in http.get("/colibri/conferences").json()
    debug = http.get("/debug").json()
    (conf,) = [c for c in debug["conferences"] if c["id"] == cid]
    assert conf["endpoints"][0]["streams"]["video_ssrcs"] == [1, 2, 3]


def test_documented_post_example(http: httpx.Client) -> None:
    r = http.post("/colibri/conferences", content=example("rest_colibri_post_request.json"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] and [c["name"] for c in out["contents"]] == ["audio", "video"]
    for content in out["contents"]:
        ch = content["channels"][0]
        assert ch["id"] and ch["expire"] == 60 and ch["rtp-level-relay-type"] == "translator"
    r = http.get(f"/colibri/conferences/{out['id']}")
    assert r.status_code == 200 and len(r.json()["contents"]) == 2


async def test_allocated_transport_connects() -> None:
    """The Colibri REST document's join, with a real endpoint's transport in step 6: ICE and DTLS complete."""
    b = start_bridge("bridge-connect")
    peer = IceDtlsPeer()
    try:
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as http:
            cid = (await http.post("/colibri/conferences/", content=b"[]")).json()["id"]
            body = example("rest_colibri_allocate_patch.json").replace(EXAMPLE_CONFERENCE, cid.encode())
            out = (await http.patch(f"/colibri/conferences/{cid}", content=body)).json()
            await peer.gather()
            r = await http.patch(
                f"/colibri/conferences/{cid}", content=answer_body(cid, out, peer.colibri_transport())
            )
            assert r.status_code == 200, r.text
            await asyncio.wait_for(peer.connect(out["channel-bundles"][0]["transport"]), 20)
            assert peer.dtls.state == "connected"
            deadline = time.monotonic() + 10
            while True:
                stats = (await http.get("/colibri/stats")).json()
                debug = (await http.get("/debug")).json()
                states = [ep["state"] for c in debug["conferences"] for ep in c["endpoints"]]
                if stats["total_ice_succeeded"] >= 1 and states == ["connected"]:
                    break
                assert time.monotonic() < deadline, (stats, states)
                await asyncio.sleep(0.1)
    finally:
        await peer.close()
        b.process.stop()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{oops", None),
        (
            b'{"contents": [{"name": "audio", "channels": [{"expire": "soon"}]}]}',
            "contents[0].channels[0].expire",
        ),
        (b'{"contents": [{"name": "audio", "channels": [{"id": "missing"}]}]}', "contents[0].channels[0].id"),
        (b'{"channel-bundles": [{"id": "ghost", "transport": {"ufrag": "u"}}]}', "channel-bundles[0].id"),
        (
            b'{"contents": [{"name": "audio", "channels": [{"endpoint": "x"}]}],'
            b'"channel-bundles": [{"id": "x", "transport": {"ufrag": "u", "pwd": "p"}}]}',
            "channel-bundles[0].transport.fingerprints",
        ),
    ],
)
def test_bad_patch_is_400_naming_the_field_and_changes_nothing(
    http: httpx.Client, body: bytes, field: str | None
) -> None:
    cid, _ = replay_allocation(http)
    before = http.get(f"/colibri/conferences/{cid}").json()
    r = http.patch(f"/colibri/conferences/{cid}", content=body)
    assert r.status_code == 400
    assert r.json()["error"]
    if field is not None:
        assert r.json()["field"] == field and field in r.json()["error"]
    assert http.get(f"/colibri/conferences/{cid}").json() == before


def test_bad_post_creates_nothing(http: httpx.Client) -> None:
    before = http.get("/colibri/conferences").json()
    bad = b'{"contents": [{"name": "audio", "channels": [{"endpoint": "a"}]}, {"name": "bogus"}]}'
    r = http.post("/colibri/conferences", content=bad)
    assert r.status_code == 400 and r.json()["field"] == "contents[1].name"
    r = http.post("/colibri/conferences", content=b'{"id": "mine"}')
    assert r.status_code == 400 and r.json()["field"] == "id"
    assert http.get("/colibri/conferences").json() == before


def test_unknown_conference_is_404(http: httpx.Client) -> None:
    assert http.get("/colibri/conferences/nope").status_code == 404
    assert http.patch("/colibri/conferences/nope", content=b"{}").status_code == 404


def test_expire_zero_frees_now_and_inactivity_expires(http: httpx.Client) -> None:
    cid, out = replay_allocation(http)
    ids = [c.get("channels", c.get("sctpconnections"))[0]["id"] for c in out["contents"]]
    body = {
        "contents": [
            {"name": "audio", "channels": [{"id": ids[0], "expire": 0}]},
            {"name": "video", "channels": [{"id": ids[1], "expire": 0}]},
            {"name": "data", "sctpconnections": [{"id": ids[2], "expire": 0}]},
        ]
    }
    r = http.patch(f"/colibri/conferences/{cid}", content=dumps(body))
    assert r.status_code == 200
    assert "contents" not in http.get(f"/colibri/conferences/{cid}").json()
    # a channel with expire 1 and no media goes away by itself; then the empty conference (idle 2 s)
    r = http.patch(
        f"/colibri/conferences/{cid}",
        content=dumps({"contents": [{"name": "audio", "channels": [{"endpoint": "e1", "expire": 1}]}]}),
    )
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while http.get(f"/colibri/conferences/{cid}").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_stats_health_version_metrics(http: httpx.Client) -> None:
    stats = http.get("/colibri/stats").json()
    for key in (
        "bit_rate_download",
        "bit_rate_upload",
        "conferences",
        "participants",
        "current_timestamp",
        "threads",
        "stress_level",
        "endpoints",
        "largest_conference",
        "packet_rate_download",
        "packet_rate_upload",
        "total_ice_succeeded",
        "total_ice_failed",
        "drain",
        "graceful_shutdown",
        "version",
    ):
        assert key in stats
    r = http.get("/about/health")
    assert r.status_code == 200 and r.content == b""
    v = http.get("/about/version").json()
    assert v["name"] == "parley-bridge" and v["version"] and v["os"]
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and "parley_bridge_conferences" in metrics.text


def test_drain(http: httpx.Client) -> None:
    assert http.get("/colibri/drain").json() == {"drain": False}
    assert http.post("/colibri/drain/enable").json() == {"drain": True}
    assert http.get("/colibri/stats").json()["drain"] is True
    assert http.post("/colibri/conferences", content=b"{}").status_code == 200  # draining still serves
    assert http.post("/colibri/drain/disable").json() == {"drain": False}
    assert http.get("/colibri/drain").json() == {"drain": False}


def test_rest_is_private_and_public_port_has_only_colibri_ws(bridge: RunningBridge) -> None:
    public = f"http://127.0.0.1:{bridge.public_port}"
    assert httpx.get(f"{public}/colibri/conferences").status_code == 404
    assert httpx.get(f"{public}/colibri/stats").status_code == 404
    assert httpx.get(f"{public}/about/health").status_code == 200


def test_graceful_shutdown_waits_for_the_last_endpoint() -> None:
    b = start_bridge("bridge-shutdown")
    try:
        with httpx.Client(base_url=b.url, timeout=10) as http:
            cid, out = replay_allocation(http)
            assert http.post("/colibri/shutdown", content=b'{"graceful-shutdown": 3}').status_code == 400
            r = http.post("/colibri/shutdown", content=b'{"graceful-shutdown": true}')
            assert r.status_code == 200
            assert http.get("/colibri/stats").json()["graceful_shutdown"] is True
            assert http.post("/colibri/conferences", content=b"{}").status_code == 503
            time.sleep(1.0)
            assert b.process.alive  # an endpoint is still there
            ids = [c.get("channels", c.get("sctpconnections"))[0]["id"] for c in out["contents"]]
            body = {
                "contents": [
                    {"name": "audio", "channels": [{"id": ids[0], "expire": 0}]},
                    {"name": "video", "channels": [{"id": ids[1], "expire": 0}]},
                    {"name": "data", "sctpconnections": [{"id": ids[2], "expire": 0}]},
                ]
            }
            assert http.patch(f"/colibri/conferences/{cid}", content=dumps(body)).status_code == 200
        assert b.process.proc is not None
        assert b.process.proc.wait(10) == 0
    finally:
        b.process.stop()


def test_healthcheck_command_and_colibri_url(bridge: RunningBridge, http: httpx.Client) -> None:
    """The container health probe passes against a live bridge and fails without one; the stats
    (and so the brewery presence) carry the Colibri REST base URL the focus should use."""
    assert http.get("/colibri/stats").json()["colibri_url"] == bridge.url
    env = {**os.environ, "JVB_COLIBRI_PORT": str(bridge.private_port)}
    probe = [sys.executable, "-m", "services.bridge.healthcheck"]
    assert subprocess.run(probe, env=env, cwd=REPO, capture_output=True, timeout=30).returncode == 0
    env["JVB_COLIBRI_PORT"] = str(free_port())
    assert subprocess.run(probe, env=env, cwd=REPO, capture_output=True, timeout=30).returncode == 1
