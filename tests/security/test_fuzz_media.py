"""Property-based fuzzing (hypothesis) of the parsers every guest's bytes reach on the media side
and of the Colibri models (docs/security.md, "The bridge's inputs"): the bridge-channel parser, STUN, RTP, RTCP, VP8
payload descriptors, Colibri JSON, and the services' guarded XMPP stream reader. For any input
only the documented parse error escapes, and the state kept per peer stays bounded.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import slixmpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.bridge.channel.dispatch import BridgeChannels
from services.bridge.media.packets import rtcp, rtp, vp8
from services.bridge.media.transport.aiortc_adapter import StunError, parse_binding_request, verify_integrity
from services.common import bridge_channel as bc
from services.common import colibri
from services.common.logging import RateLimitedLogger
from services.common.xmpp_guard import GuardedStreamMixin

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)
class_names = st.sampled_from([*bc.MESSAGE_CLASSES, "Nope", "", "__class__"])


@st.composite
def bridge_messages(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(st.dictionaries(st.sampled_from(
        ["to", "msgPayload", "lastN", "constraints", "selectedSources", "onStageSources", "sourceName",
         "videoType", "include", "exclude", "all", "defaultConstraints", "from", "version", "x"]
    ), json_values, max_size=6))  # fmt: skip
    obj["colibriClass"] = draw(class_names | json_values)
    return obj


# ----------------------------------------------------------------------------- bridge channel


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), bridge_messages().map(json.dumps)))
def test_bridge_channel_parse_raises_only_its_error(data: str | bytes) -> None:
    try:
        message = bc.parse(data)
    except bc.BridgeChannelError:
        return
    assert json.loads(bc.serialize(message))["colibriClass"] == message.colibri_class  # type: ignore[attr-defined]


@FUZZ
@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", '{"a":', '[{"b":']))
def test_bridge_channel_depth_and_size_limits(depth: int, opener: str) -> None:
    closer = {"[": "]", '{"a":': "}", '[{"b":': "}]"}[opener]
    text = '{"colibriClass":"EndpointMessage","msgPayload":' + opener * depth + "1" + closer * depth + "}"
    try:
        bc.parse(text)
        assert depth < bc.MAX_DEPTH and len(text) <= bc.MAX_MESSAGE_BYTES
    except bc.BridgeChannelError as exc:
        assert depth * opener.count("[") + depth * opener.count("{") + 1 > bc.MAX_DEPTH or len(text) > (
            bc.MAX_MESSAGE_BYTES
        ), exc


class Sink:
    name = "sink"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send_text(self, conference_id: str, endpoint_id: str, text: str) -> bool:
        self.sent.append((endpoint_id, text))
        del self.sent[:-100]
        return True


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(["e1", "e2", "e3"]), bridge_messages().map(json.dumps)), max_size=40)
)
def test_bridge_channels_state_stays_bounded(frames: list[tuple[str, str]]) -> None:
    clock = [0.0]
    channels = BridgeChannels(
        endpoints_of=lambda cid: ["e1", "e2", "e3"],
        to_engine=lambda cid, eid, msg: None,
        version="fuzz",
        clock=lambda: clock[0],
    )
    sink = Sink()
    channels.add_transport(sink)
    for endpoint, frame in frames:
        clock[0] += 0.01
        channels.receive("c", endpoint, frame, "sink")
    assert len(channels._preferred) <= 3 and len(channels._last_error) <= 3
    errors = [t for _e, t in sink.sent if '"colibriClass":"Error"' in t]
    assert len(errors) <= 3 * (1 + int(clock[0] / 1.0))  # at most one a second per endpoint


# ------------------------------------------------------------------------------------- STUN


@st.composite
def stun_datagrams(draw: st.DrawFn) -> bytes:
    attrs = draw(st.lists(st.tuples(
        st.sampled_from([0x0006, 0x0008, 0x0009, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802A, 0x0001,
                         draw(st.integers(0, 0xFFFF))]),
        st.binary(max_size=24),
    ), max_size=6))  # fmt: skip
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attrs)
    declared = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFF)))
    method = draw(st.sampled_from([0x0001, 0x0101, 0x0111, draw(st.integers(0, 0x3FFF))]))
    return (
        struct.pack("!HHI", method, declared, 0x2112A442) + draw(st.binary(min_size=12, max_size=12)) + body
    )


@FUZZ
@given(st.one_of(stun_datagrams(), st.binary(max_size=120)))
def test_stun_parse_raises_only_stun_error(datagram: bytes) -> None:
    try:
        request = parse_binding_request(datagram)
    except StunError:
        return
    assert isinstance(verify_integrity(request, "password-of-twenty-two"), bool)


# ---------------------------------------------------------------------------------- RTP, RTCP


@FUZZ
@given(st.binary(max_size=200), st.integers(1, 14))
def test_rtp_parsers_raise_only_rtp_error(packet: bytes, ext_id: int) -> None:
    start, end = rtp.payload_bounds(packet)
    assert (start, end) == (-1, -1) or 0 <= start <= end <= len(packet)
    assert rtp.find_extension(packet, ext_id) is None or isinstance(rtp.find_extension(packet, ext_id), bytes)
    level = rtp.audio_level(packet, ext_id)
    assert level is None or 0 <= level[0] <= 127
    for call in (
        lambda: rtp.header_fields(packet),
        lambda: rtp.header_length(packet),
        lambda: rtp.unwrap_rtx(packet, 100, 1234),
        lambda: rtp.wrap_rtx(packet, 101, 1, 5678, 7),
    ):
        try:
            call()
        except rtp.RtpError:
            pass
    if start >= 0:
        desc = vp8.parse_descriptor(packet, start, end)
        assert desc is None or start + desc.size <= end
        assert isinstance(vp8.is_keyframe_start(packet, start, end), bool)


@st.composite
def rtcp_compounds(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        count = draw(st.integers(0, 31))
        ptype = draw(
            st.sampled_from([rtcp.SR, rtcp.RR, rtcp.RTPFB, rtcp.PSFB, 202, 203, draw(st.integers(0, 255))])
        )
        body = draw(st.binary(max_size=60))
        body += b"\0" * (-len(body) % 4)
        words = draw(st.one_of(st.just(len(body) // 4), st.integers(0, 0xFFFF)))
        out += struct.pack("!BBH", 0x80 | count, ptype, words) + body
    return out


@FUZZ
@given(st.one_of(rtcp_compounds(), st.binary(max_size=120)))
def test_rtcp_parsers_raise_only_rtcp_error(compound: bytes) -> None:
    try:
        for ptype, count, packet in rtcp.iter_packets(compound):
            offset = 28 if ptype == rtcp.SR else 8
            for call in (
                lambda p=packet: rtcp.parse_sr(p),
                lambda p=packet, c=count, o=offset: rtcp.parse_report_blocks(p, c, o),
                lambda p=packet: rtcp.feedback_ssrcs(p),
            ):
                try:
                    call()
                except rtcp.RtcpError:
                    pass
            assert all(0 <= s <= 0xFFFF for s in rtcp.parse_nack(packet))
            assert all(0 <= s < 1 << 32 for s in rtcp.parse_fir_ssrcs(packet))
            remb = rtcp.parse_remb(packet)
            assert remb is None or remb[0] >= 0
    except rtcp.RtcpError:
        pass


# ------------------------------------------------------------------------------ Colibri models


@FUZZ
@given(st.one_of(
    st.binary(max_size=200),
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(["id", "contents", "channel-bundles", "name", "x"]), json_values, max_size=4)
    .map(json.dumps),
    st.integers(1, 5000).map(lambda d: "[" * d + "]" * d),
))  # fmt: skip
def test_colibri_parse_raises_only_its_error(body: str | bytes) -> None:
    try:
        conf = colibri.parse_conference(body)
    except colibri.ColibriFormatError:
        return
    assert colibri.parse_conference(json.dumps(colibri.dump(conf))) == conf


# --------------------------------------------------------------------------- XMPP stream reader


class _Transport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False


class _Guarded(GuardedStreamMixin, slixmpp.ClientXMPP):
    pass


xml_names = st.sampled_from(["iq", "message", "presence", "a", "b", "jingle", "query"])


@st.composite
def stanzas(draw: st.DrawFn) -> str:
    depth = draw(st.sampled_from([0, 1, 5, 31, 32, 33, 100, 2000]))
    name = draw(xml_names)
    kind = draw(st.sampled_from(["get", "set", "result", "error", "x"]))
    inner = (
        "<a xmlns='urn:f'>" * min(depth, 1)
        + "<b>" * max(depth - 1, 0)
        + "</b>" * max(depth - 1, 0)
        + "</a>" * min(depth, 1)
    )
    text = draw(
        st.text(
            alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="<>&'\""),
            max_size=50,
        )
    )
    return f"<{name} type='{kind}' id='i' from='g@meet.jitsi/r'>{inner}{text}</{name}>"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stanzas(), min_size=1, max_size=6), st.integers(1, 4096))
def test_guarded_reader_survives_any_stanza_and_keeps_nothing(items: list[str], chunk: int) -> None:
    logging.getLogger("slixmpp").setLevel(logging.CRITICAL)
    client = _Guarded("focus@auth.meet.jitsi/focus", "pw")
    client.connection_made(_Transport(), send_event=False)  # type: ignore[arg-type]
    client.data_received(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    )
    data = "".join(items)
    for i in range(0, len(data), chunk):
        client.data_received(data[i : i + chunk])
    assert client.xml_depth == 1  # between stanzas, nothing left open
    assert client.xml_root is not None and len(client.xml_root) == 0  # no stanza kept


def test_rate_limited_logger_keeps_a_bounded_table() -> None:
    limited = RateLimitedLogger(logging.getLogger("fuzz"), interval=60, max_keys=50)
    for i in range(5000):
        limited.warning(("k", i), "line %d", i)
        assert len(limited._last) <= 50 and len(limited._held) <= 50
