"""Random and malformed input against a running bridge: Colibri REST bodies never get a 500, random
bridge-channel frames never break a WebSocket, and the bridge never logs a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as ws_connect

from services.common import bridge_channel as bc
from tests.integration.test_bridge_control_support import RunningBridge, example, start_bridge

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
ENDPOINTS = st.sampled_from(["e1", "e2", "9f537ebb-1c2a-4ee9-9940-373304f9b260", ""])
CHANNEL_KEYS = [
    "id",
    "endpoint",
    "channel-bundle-id",
    "expire",
    "initiator",
    "direction",
    "last-n",
    "rtp-level-relay-type",
    "receive-simulcast-layer",
    "sources",
    "ssrc-groups",
    "payload-types",
    "rtp-hdrexts",
]


def field_value(key: str) -> st.SearchStrategy[Any]:
    typed: dict[str, st.SearchStrategy[Any]] = {
        "endpoint": ENDPOINTS,
        "channel-bundle-id": ENDPOINTS,
        "expire": st.integers(-2, 120),
        "direction": st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive", "x"]),
        "rtp-level-relay-type": st.sampled_from(["translator", "mixer", "relay"]),
        "sources": st.lists(st.integers(-1, 2**32), max_size=3),
        "ssrc-groups": st.lists(
            st.fixed_dictionaries(
                {
                    "semantics": st.sampled_from(["FID", "SIM"]),
                    "sources": st.lists(st.integers(0, 2**32), max_size=3),
                }
            )
        ),
        "payload-types": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.integers(-1, 200),
                    "name": st.sampled_from(["opus", "VP8", "rtx", ""]),
                    "clockrate": st.integers(0, 96000),
                },
                optional={
                    "channels": st.integers(-1, 2),
                    "parameters": st.dictionaries(st.text(max_size=4), JSON),
                    "rtcp-fbs": st.lists(st.fixed_dictionaries({"type": st.text(max_size=4)})),
                },
            ),
            max_size=2,
        ),
    }
    return typed.get(key, JSON)


CHANNEL = st.fixed_dictionaries({}, optional={k: field_value(k) for k in CHANNEL_KEYS})
TRANSPORT = st.fixed_dictionaries(
    {},
    optional={
        "xmlns": st.sampled_from(["urn:xmpp:jingle:transports:ice-udp:1", "x"]),
        "ufrag": st.text(max_size=6),
        "pwd": st.text(max_size=6),
        "rtcp-mux": st.booleans(),
        "fingerprints": st.lists(
            st.fixed_dictionaries(
                {
                    "fingerprint": st.sampled_from(["AB:CD", "zz", ""]),
                    "hash": st.sampled_from(["sha-256", "md5", ""]),
                },
                optional={"setup": st.sampled_from(["active", "passive", "actpass", "bogus"])},
            ),
            max_size=2,
        ),
        "candidates": st.lists(JSON, max_size=2),
    },
)
CONFERENCE = st.fixed_dictionaries(
    {},
    optional={
        "contents": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["audio", "video", "data", "other"])},
                optional={
                    "channels": st.lists(CHANNEL, max_size=3),
                    "sctpconnections": st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "endpoint": ENDPOINTS,
                                "expire": st.integers(-1, 60),
                                "port": st.integers(-1, 70000),
                            },
                        ),
                        max_size=2,
                    ),
                },
            ),
            max_size=4,
        ),
        "channel-bundles": st.lists(
            st.fixed_dictionaries({"id": ENDPOINTS}, optional={"transport": TRANSPORT}), max_size=2
        ),
        "id": st.none() | st.text(max_size=4),
    },
)
BODIES = (
    CONFERENCE.map(lambda d: json.dumps(d).encode())
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
)


@pytest.fixture(scope="module")
def bridge() -> Iterator[RunningBridge]:
    b = start_bridge("bridge-fuzz")
    try:
        yield b
    finally:
        b.process.stop()


@pytest.fixture(scope="module")
def http(bridge: RunningBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def conference_id(http: httpx.Client) -> str:
    cid = http.post("/colibri/conferences", content=b"[]").json()["id"]
    body = example("rest_colibri_allocate_patch.json").replace(b"a439deb315b4128c", cid.encode())
    assert http.patch(f"/colibri/conferences/{cid}", content=body).status_code == 200
    return cid


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, method=st.sampled_from(["POST", "PATCH", "PATCH-unknown"]))
def test_no_500(http: httpx.Client, conference_id: str, body: bytes, method: str) -> None:
    if method == "POST":
        r = http.post("/colibri/conferences", content=body)
    elif method == "PATCH":
        r = http.patch(f"/colibri/conferences/{conference_id}", content=body)
    else:
        r = http.patch("/colibri/conferences/unknown", content=body)
    assert r.status_code in (200, 400, 404), (r.status_code, r.text, body)
    if r.status_code != 200:
        assert r.json()["error"]


CLASSES = st.sampled_from([*bc.MESSAGE_CLASSES, "Unknown", ""])
MESSAGES = (
    st.builds(
        lambda cls, extra: json.dumps({"colibriClass": cls, **extra}),
        CLASSES,
        st.dictionaries(
            st.sampled_from(
                [
                    "to",
                    "msgPayload",
                    "lastN",
                    "constraints",
                    "selectedSources",
                    "sourceName",
                    "videoType",
                    "from",
                    "x",
                ]
            ),
            JSON,
            max_size=4,
        ),
    )
    | JSON.map(json.dumps)
    | st.text(max_size=40)
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(MESSAGES, min_size=1, max_size=5))
def test_bridge_channel_survives_random_frames(
    http: httpx.Client, ws_urls: dict[str, str], frames: list[str]
) -> None:
    with ws_connect(ws_urls["f1"]) as sender, ws_connect(ws_urls["f2"]) as other:
        assert json.loads(sender.recv(5))["colibriClass"] == "ServerHello"
        assert json.loads(other.recv(5))["colibriClass"] == "ServerHello"
        for frame in frames:
            sender.send(frame)
        sender.send(json.dumps({"colibriClass": "ClientHello"}))
        while (reply := json.loads(sender.recv(5)))["colibriClass"] != "ServerHello":
            assert reply["colibriClass"] in bc.MESSAGE_CLASSES  # e.g. ForwardedSources from the engine


@pytest.fixture(scope="module")
def ws_urls(http: httpx.Client) -> dict[str, str]:
    body = {
        "contents": [{"name": "audio", "channels": [{"endpoint": "f1"}, {"endpoint": "f2"}]}],
        "channel-bundles": [{"id": "f1"}, {"id": "f2"}],
    }
    out = http.post("/colibri/conferences", content=json.dumps(body)).json()
    return {b["id"]: b["transport"]["web-socket"] for b in out["channel-bundles"]}


def test_bridge_survived(bridge: RunningBridge, http: httpx.Client) -> None:
    assert bridge.process.alive
    assert http.get("/about/health").status_code == 200
    assert "Traceback" not in bridge.process.log(tail=1_000_000)
