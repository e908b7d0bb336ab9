"""Where a live stream may go: public addresses only unless the operator allows a network, the
operator's URL list, the address checked is the one connected to (services/recorder/stream_policy.py)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from services.common.config import ConfigError
from services.common.jibri import Action, JibriIq, RecordingMode
from services.recorder import config
from services.recorder.service import Recorder, Refused
from services.recorder.stream_policy import StreamPolicy, StreamRefused, public

ip = ipaddress.ip_address

REFUSED = [
    "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.51.100.1", "fe80::1",
    "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "240.0.0.1", "::",
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert not public(ip(address))
    with pytest.raises(StreamRefused, match="not allowed"):
        StreamPolicy().connect_url(StreamPolicy().target("rtmp://live.example/app/k"), [ip(address)])


def test_a_public_name_is_connected_to_by_the_address_checked() -> None:
    policy = StreamPolicy()
    target = policy.target("rtmp://live.example/app/k")
    assert policy.connect_url(target, [ip("203.0.114.7")]) == "rtmp://203.0.114.7:1935/app/k"
    # one private address among the answers is enough to refuse (the connection could use it)
    with pytest.raises(StreamRefused):
        policy.connect_url(target, [ip("203.0.114.7"), ip("10.0.0.1")])
    with pytest.raises(StreamRefused, match="no address"):
        policy.connect_url(target, [])
    # rtmps keeps the name (TLS's SNI), after the same check
    tls = policy.target("rtmps://live.example/app/k")
    assert policy.connect_url(tls, [ip("2001:4860::1")]) == "rtmps://live.example:443/app/k"
    with pytest.raises(StreamRefused):
        policy.connect_url(tls, [ip("::1")])


def test_allowed_networks_and_urls() -> None:
    policy = StreamPolicy.from_settings(["127.0.0.1/32", "10.5.0.0/16"], [])
    target = policy.target("rtmp://127.0.0.1:1936/live/m")
    assert policy.connect_url(target, [ip("127.0.0.1")]) == "rtmp://127.0.0.1:1936/live/m"
    assert policy.connect_url(target, [ip("10.5.3.3")]) == "rtmp://10.5.3.3:1936/live/m"
    with pytest.raises(StreamRefused):
        policy.connect_url(target, [ip("127.0.0.2")])

    listed = StreamPolicy.from_settings([], ["rtmp://a.rtmp.youtube.com/live2", "rtmps://live.example:443/"])
    assert listed.target("rtmp://a.rtmp.youtube.com/live2/key-1")
    assert listed.target("rtmp://A.rtmp.youtube.com:1935/live2")
    assert listed.target("rtmps://live.example/any/path")
    for url in (
        "rtmp://a.rtmp.youtube.com/live20/key",  # not at a "/"
        "rtmp://a.rtmp.youtube.com/live2/../admin",
        "rtmp://a.rtmp.youtube.com:1936/live2/key",
        "rtmps://a.rtmp.youtube.com/live2/key",
        "rtmp://a.rtmp.youtube.com.evil.example/live2/key",
        "rtmp://live.example/app/k",
    ):
        with pytest.raises(StreamRefused):
            listed.target(url)


@pytest.mark.parametrize(
    ("var", "value"),
    [("RECORDER_RTMP_ALLOWED_NETWORKS", "10.0.0.0/33"), ("RECORDER_RTMP_ALLOWED_URLS", "http://x/")],
)
def test_bad_policy_settings_are_refused_at_start(var: str, value: str) -> None:
    with pytest.raises(ConfigError):
        config.load(environ={"JIBRI_XMPP_PASSWORD": "s", var: value})


def make_recorder(tmp_path: Path, **env: str) -> Recorder:
    settings = config.load(environ={"JIBRI_XMPP_PASSWORD": "s", "JIBRI_RECORDING_DIR": str(tmp_path), **env})
    return Recorder(settings, "http://127.0.0.1:8300")


def stream(url: str, session: str = "s1") -> JibriIq:
    return JibriIq(action=Action.START, recording_mode=RecordingMode.STREAM, stream_id=url,
                   session_id=session, room="r@muc.meet.jitsi")  # fmt: skip


async def test_the_recorder_refuses_before_it_starts_anything(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        asked.append(host)
        return [ip("169.254.169.254")]

    recorder.resolve = rebinding
    for url in ("rtmp://127.0.0.1:6379/x", "rtmp://[::1]:5222/x", "rtmp://10.0.0.8/live/k",
                "rtmp://metadata.example/latest/meta-data"):  # fmt: skip
        with pytest.raises(Refused) as refused:
            await recorder.jibri_request("brewery/focus", stream(url))
        assert refused.value.condition == "not-acceptable", url
    assert asked == ["metadata.example"]  # IP literals are not resolved
    with pytest.raises(Refused) as refused:
        await recorder.jibri_request("brewery/focus", stream("rtmp://u:p@live.example/x"))
    assert refused.value.condition == "bad-request"
    assert recorder.recordings == {} and not os.listdir(tmp_path)

    async def unresolvable(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        raise OSError("Name or service not known")

    recorder.resolve = unresolvable
    with pytest.raises(Refused, match="cannot resolve"):
        await recorder.jibri_request("brewery/focus", stream("rtmp://nowhere.example/x"))
    await recorder.close()


async def test_recordings_are_ended_past_their_duration_or_when_the_disk_fills(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path, RECORDER_MAX_DURATION="60", RECORDER_MIN_FREE_BYTES="1000")
    sent: list[tuple[str, JibriIq]] = []

    class Focus:
        def publish_status(self, status: object) -> None:
            pass

        async def send_jingle(self, to: str, message: object) -> bool:
            return True

        async def send_status(self, to: str, iq: JibriIq) -> bool:
            sent.append((to, iq))
            return True

    recorder.signaling = Focus()  # type: ignore[assignment]
    file = JibriIq(action=Action.START, session_id="f1", room="a@muc.meet.jitsi")
    await recorder.jibri_request("brewery/focus", file)
    await recorder.jibri_request("brewery/focus", stream("rtmp://93.184.216.34/live/k", "s1"))
    started = recorder.recordings["f1"].started_at
    assert recorder.over_bounds(started + 10, free=10**9) == []
    # a full disk ends file recordings only (a stream writes nothing here)
    assert [sid for sid, _ in recorder.over_bounds(started + 10, free=10)] == ["f1"]
    over = recorder.over_bounds(started + 61, free=10**9)
    assert sorted(sid for sid, _ in over) == ["f1", "s1"] and "maximum duration" in over[0][1]
    # an output that failed (the RTMP server went away): ended, without the error's text (the URL)
    recorder.recordings["s1"].composer.error = "rtmp://93.184.216.34/live/k: Connection refused"
    recorder.recordings["f1"].composer.error = "disk error"  # a file recording goes on
    assert recorder.over_bounds(started + 10, free=10**9) == [("s1", "the live stream's connection failed")]
    await recorder.end("f1", over[0][1])
    assert "f1" not in recorder.recordings
    [(to, update)] = sent
    assert to == "brewery/focus" and update.status.value == "off" and "maximum duration" in (update.failure_reason or "")
    await recorder.close()


async def test_a_file_recording_needs_free_disk_to_start(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path, RECORDER_MIN_FREE_BYTES=str(10**18))
    with pytest.raises(Refused) as refused:
        await recorder.jibri_request("brewery/focus", JibriIq(action=Action.START, session_id="f1", room="a@m"))
    assert refused.value.condition == "resource-constraint" and "disk" in refused.value.text
    assert recorder.recordings == {}
    await recorder.close()
