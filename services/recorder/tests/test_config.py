"""The recorder's settings: defaults, Jibri's variable names, one clear line for a bad value."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.recorder import config


def test_defaults_and_jibri_variables() -> None:
    s = config.load(environ={"JIBRI_XMPP_PASSWORD": "secret", "JIBRI_INSTANCE_ID": "rec7",
                             "RECORDER_ICE_HOST_ADDRESSES": "127.0.0.1, 10.0.0.2"})  # fmt: skip
    assert s.xmpp.jid == "jibri@auth.meet.jitsi/rec7"
    assert s.xmpp.brewery_jid == "jibribrewery@internal-muc.meet.jitsi"
    assert s.capacity == 4 and s.http.port == 8300
    assert s.ice_host_addresses == ["127.0.0.1", "10.0.0.2"]
    assert (s.composite.width, s.composite.height, s.composite.fps) == (640, 360, 15)
    assert (s.layout, s.bridge_channel, s.bridge_channel_origin) == ("grid", "speaker", "")
    assert (s.composite.preset, s.composite.crf) == ("ultrafast", 25)
    assert (s.composite.file_rate_control, s.composite.qp) == ("qp", 23)
    assert s.max_receive_bitrate == 20_000_000


def test_a_password_is_required() -> None:
    with pytest.raises(ConfigError, match=r"recorder\.xmpp\.password"):
        config.load(environ={})


@pytest.mark.parametrize(
    ("var", "value", "setting"),
    [
        ("RECORDER_COMPOSITE_WIDTH", "641", "recorder.composite.width"),
        ("RECORDER_CAPACITY", "0", "recorder.capacity"),
        ("RECORDER_HTTP_PORT", "x", "recorder.http.port"),
        ("RECORDER_LAYOUT", "mosaic", "recorder.layout"),
        ("RECORDER_COMPOSITE_FILE_RATE_CONTROL", "abr", "recorder.composite.file-rate-control"),
        ("RECORDER_COMPOSITE_QP", "52", "recorder.composite.qp"),
        ("RECORDER_BRIDGE_CHANNEL", "sometimes", "recorder.bridge-channel"),
        ("RECORDER_MAX_RECEIVE_BITRATE", "1000", "recorder.max-receive-bitrate"),
    ],
)
def test_bad_values_name_the_setting(var: str, value: str, setting: str) -> None:
    with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
        config.load(environ={"JIBRI_XMPP_PASSWORD": "s", var: value})


def test_files_at_constant_quality_instead() -> None:
    s = config.load(environ={"JIBRI_XMPP_PASSWORD": "s", "RECORDER_COMPOSITE_FILE_RATE_CONTROL": "crf",
                             "RECORDER_COMPOSITE_CRF": "28", "RECORDER_COMPOSITE_QP": "30"})  # fmt: skip
    assert (s.composite.file_rate_control, s.composite.crf, s.composite.qp) == ("crf", 28, 30)
