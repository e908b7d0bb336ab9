"""Jibri wire format: round trips, Jitsi's shapes, hostile values refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from services.common import jibri
from services.common.jibri import (
    Action,
    JibriFormatError,
    JibriIq,
    RecorderStatus,
    RecordingMode,
    RecordingStatus,
    Status,
)


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def test_start_iq_as_lib_jitsi_meet_sends_it() -> None:
    el = parse(
        "<jibri xmlns='http://jitsi.org/protocol/jibri' action='start' recording_mode='stream'"
        " streamid='rtmp://live.example/app/key' app_data='{}'/>"
    )
    iq = JibriIq.from_element(el).checked_start()
    assert iq.action is Action.START
    assert iq.recording_mode is RecordingMode.STREAM
    assert iq.stream_id == "rtmp://live.example/app/key"
    again = JibriIq.from_element(iq.to_element())
    assert again == iq


def test_file_is_the_default_mode_and_stop_round_trips() -> None:
    start = JibriIq.from_element(parse("<jibri xmlns='http://jitsi.org/protocol/jibri' action='start'/>"))
    assert start.checked_start().recording_mode is RecordingMode.FILE
    stop = JibriIq(action=Action.STOP, session_id="abc123")
    el = stop.to_element()
    assert el.tag == jibri.JIBRI_TAG and el.get("action") == "stop" and el.get("session_id") == "abc123"
    assert JibriIq.from_element(el) == stop


@pytest.mark.parametrize(
    "xml",
    [
        "<jibri xmlns='http://jitsi.org/protocol/jibri' action='explode'/>",
        "<jibri xmlns='http://jitsi.org/protocol/jibri' status='maybe'/>",
        "<jibri xmlns='http://jitsi.org/protocol/jibri' recording_mode='tape'/>",
        "<jibri xmlns='http://jitsi.org/protocol/jibri' session_id='../../etc'/>",
        "<jibri xmlns='http://jitsi.org/protocol/jibri' session_id='" + "a" * 300 + "'/>",
        "<jibri xmlns='http://jitsi.org/protocol/jibri' streamid='" + "r" * 5000 + "'/>",
        "<jibri xmlns='urn:other'/>",
    ],
)
def test_hostile_or_malformed_elements_are_refused(xml: str) -> None:
    with pytest.raises(JibriFormatError):
        JibriIq.from_element(parse(xml))


@pytest.mark.parametrize(
    "stream_id",
    [
        None,
        "http://x/y",
        "rtmp://a b",
        "rtmp://user:pw@10.0.0.1/live/x",  # user info: parsers disagree on where the host is
        "rtmp://live.example\\@10.0.0.1/live/x",
        "rtmp://live.example/live/x#frag",
        "rtmp://live.example/live/x y",
        "rtmp://live.example/live/\"><script>",
        "rtmp://live.example:0/live/x",
        "rtmp://live.example:99999/live/x",
        "rtmp://-bad-.example/live/x",
        "rtmp:///live/x",
        "rtmp://live.example/live/\x00",
        "rtmp://liv\u00e9.example/live/x",
        "rtmp://live.example/" + "k" * 1100,
        "key with space",
        "../../admin",
        "key\nnext",
    ],
)
def test_stream_mode_needs_an_rtmp_target(stream_id: str | None) -> None:
    iq = JibriIq(action=Action.START, recording_mode=RecordingMode.STREAM, stream_id=stream_id)
    with pytest.raises(JibriFormatError):
        iq.checked_start()


def test_stream_urls_are_taken_apart_and_rebuilt_from_what_was_checked() -> None:
    t = jibri.parse_stream_url("rtmp://Live.Example/live2/abcd-efgh?x=1")
    assert (t.scheme, t.host, t.port, t.path) == ("rtmp", "live.example", 1935, "/live2/abcd-efgh?x=1")
    assert t.url() == "rtmp://live.example:1935/live2/abcd-efgh?x=1"
    assert t.url("203.0.113.5") == "rtmp://203.0.113.5:1935/live2/abcd-efgh?x=1"
    assert t.address is None
    v6 = jibri.parse_stream_url("rtmps://[2001:db8::1]/app/k")
    assert (v6.host, v6.port, str(v6.address)) == ("2001:db8::1", 443, "2001:db8::1")
    assert v6.url() == "rtmps://[2001:db8::1]:443/app/k"
    assert jibri.parse_stream_url("rtmp://127.0.0.1:1936/live/m").url() == "rtmp://127.0.0.1:1936/live/m"
    for key in ("abcd-efgh-ijkl-mnop", "live_123_abc", "app/key?token=1"):
        assert JibriIq(action=Action.START, recording_mode=RecordingMode.STREAM, stream_id=key).checked_start()


def test_recorder_status_presence_shape_and_capacity() -> None:
    status = RecorderStatus(busy=False, capacity=4, active=1, http_url="http://127.0.0.1:8300")
    el = status.to_element()
    assert el.tag == "{http://jitsi.org/protocol/jibri}jibri-status"
    assert el.find(jibri.BUSY_TAG).get("status") == "idle"  # type: ignore[union-attr]
    assert el.find(jibri.HEALTH_TAG).get("status") == "healthy"  # type: ignore[union-attr]
    back = RecorderStatus.from_element(el)
    assert back == status and back.free == 3
    # Jibri's own presence (no Parley attributes): busy means no room at all
    plain = parse(
        "<jibri-status xmlns='http://jitsi.org/protocol/jibri'>"
        "<busy-status xmlns='http://jitsi.org/protocol/jibri' status='busy'/>"
        "<health-status xmlns='http://jitsi.org/protocol/health' status='healthy'/></jibri-status>"
    )
    assert RecorderStatus.from_element(plain).free == 0
    unhealthy = RecorderStatus(healthy=False, capacity=3)
    assert RecorderStatus.from_element(unhealthy.to_element()).free == 0


def test_recorder_status_rejects_absurd_numbers_and_drops_bad_urls() -> None:
    el = RecorderStatus(capacity=2).to_element()
    el.find(jibri.BUSY_TAG).set("capacity", "99999999")  # type: ignore[union-attr]
    with pytest.raises(JibriFormatError):
        RecorderStatus.from_element(el)
    el = RecorderStatus(capacity=2, http_url="javascript:alert(1)").to_element()
    assert RecorderStatus.from_element(el).http_url is None


def test_recording_status_in_the_focus_presence() -> None:
    status = RecordingStatus(Status.ON, RecordingMode.FILE, session_id="s1", initiator="room@muc/alice")
    el = status.to_element()
    assert el.tag == "{http://jitsi.org/protocol/jibri}jibri-recording-status"
    assert el.get("status") == "on" and el.get("recording_mode") == "file"
    assert RecordingStatus.from_element(el) == status


def test_media_sessions_name_their_recording() -> None:
    assert jibri.session_of_sid(jibri.media_sid("ab12-cd", 3)) == "ab12-cd"
    assert jibri.session_of_sid("plainsid") is None
    assert jibri.session_of_sid("x-y") is None
