"""The bridge's registry of conference policies: Colibri channel settings reach the running
conference's policy, and a policy goes away with its conference, mixer thread and all."""

from __future__ import annotations

import threading

from services.bridge import config
from services.bridge.app import Bridge
from services.bridge.media.forwarding.rtcp_termination import request_keyframe
from services.common.colibri import parse_conference


def mixer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "parley-mixer" and t.is_alive()]


def allocation(*endpoints: str, mixer: str, last_n: int) -> dict:
    return {
        "contents": [
            {
                "name": "audio",
                "channels": [
                    {"endpoint": e, **({"rtp-level-relay-type": "mixer"} if e == mixer else {})}
                    for e in endpoints
                ],
            },
            {"name": "video", "channels": [{"endpoint": e, "last-n": last_n} for e in endpoints]},
        ],
        "channel-bundles": [{"id": e} for e in endpoints],
    }


async def test_colibri_settings_reach_the_policy_and_expiry_closes_it() -> None:
    bridge = Bridge(config.load(environ={}))
    before = len(mixer_threads())
    created = bridge.colibri.create_conference(parse_conference(allocation("a", "b", mixer="a", last_n=2)))
    cid = created["id"]
    policy = bridge.policies.get(cid)
    assert policy is not None
    # built with what asks a sender for key frames (RFC 4585 PLI), not given it afterwards
    assert policy.request_keyframe is request_keyframe
    assert policy.video.settings("a").colibri_last_n == 2
    assert policy.video.settings("b").colibri_last_n == 2
    audio = next(c for c in created["contents"] if c["name"] == "audio")["channels"]
    mixed = next(ch for ch in audio if ch["endpoint"] == "a")
    assert mixed["sources"] == [policy._mixed["a"].ssrc]
    assert len(mixer_threads()) == before + 1

    bridge.colibri.expire_all()
    assert cid not in bridge.policies
    assert len(mixer_threads()) == before


async def test_forgetting_a_conference_closes_its_policy() -> None:
    """The expiry listener closes the policy even when its endpoints left no trace on it."""
    bridge = Bridge(config.load(environ={}))
    before = len(mixer_threads())
    policy = bridge.policies.create("c1", lambda endpoint, message: None, request_keyframe)
    policy.set_audio_mixing("x", True)
    assert len(mixer_threads()) == before + 1
    bridge.conference_expired("c1")
    assert "c1" not in bridge.policies
    assert len(mixer_threads()) == before


async def test_a_conference_rebuilt_by_the_engine_replaces_and_closes_the_old_policy() -> None:
    bridge = Bridge(config.load(environ={}))
    before = len(mixer_threads())
    old = bridge.policies.create("c2", lambda endpoint, message: None, request_keyframe)
    old.set_audio_mixing("x", True)
    new = bridge.policies.create("c2", lambda endpoint, message: None, request_keyframe)
    assert bridge.policies.get("c2") is new
    assert len(mixer_threads()) == before
    old.set_audio_mixing("x", False)
    old.set_audio_mixing("y", True)  # what the closed policy reports starts no thread
    assert len(mixer_threads()) == before
    new.set_audio_mixing("x", True)
    assert len(mixer_threads()) == before + 1
    bridge.policies.forget_all()


async def test_forget_all_stops_every_mixer_thread() -> None:
    bridge = Bridge(config.load(environ={}))
    before = len(mixer_threads())
    for cid in ("c3", "c4"):
        bridge.policies.create(cid, lambda endpoint, message: None, request_keyframe).set_audio_mixing("x", True)
    assert len(mixer_threads()) == before + 2
    bridge.policies.forget_all()
    assert len(bridge.policies) == 0 and len(mixer_threads()) == before
