"""G.711, resampling, mixing, RTP and the plain-RTP SDP answer."""

from __future__ import annotations

import numpy as np
import pytest

from services.sip import audio

OFFER = (
    "v=0\r\no=phone 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=sendrecv\r\n"
)


@pytest.mark.parametrize("pt", [audio.PCMU, audio.PCMA])
def test_g711_round_trip_keeps_a_tone(pt: int) -> None:
    t = np.arange(160) / 8000
    pcm = (np.sin(2 * np.pi * 1000 * t) * 10000).astype(np.int16)
    back = audio.g711_decode(audio.g711_encode(pcm, pt), pt)
    assert len(back) == 160
    assert np.max(np.abs(back.astype(np.int32) - pcm)) < 10000 * 0.07  # companding error, a few %
    # every code decodes to a value that encodes back to itself
    codes = np.arange(256, dtype=np.uint8)
    decoded = audio.g711_decode(codes.tobytes(), pt)
    assert audio.g711_decode(audio.g711_encode(decoded, pt), pt).tolist() == decoded.tolist()


def test_resampling() -> None:
    t = np.arange(960) / 48000
    tone = (np.sin(2 * np.pi * 500 * t) * 8000).astype(np.int16)
    down = audio.down_48k_to_8k(tone)
    assert len(down) == 160 and len(audio.up_8k_to_48k(down)) == 960


def test_frame_queue_is_bounded_and_a_prompt_plays_instead_of_the_stream() -> None:
    from services.sip.meeting import MAX_QUEUED_FRAMES, FrameQueue

    q = FrameQueue()
    assert not q.pull().any()  # nothing queued: silence
    q.push(np.full(audio.FRAME * (MAX_QUEUED_FRAMES + 3), 7, np.int16))
    assert (q.frames_in, q.frames_dropped, len(q.frames)) == (MAX_QUEUED_FRAMES + 3, 3, MAX_QUEUED_FRAMES)
    q.play([np.full(audio.FRAME, 9, np.int16)])
    assert (q.pull() == 9).all() and len(q.frames) == MAX_QUEUED_FRAMES - 1  # the stream is consumed meanwhile
    assert (q.pull() == 7).all()


def test_rtp_round_trip_and_rtcp_ignored() -> None:
    packet = audio.rtp_packet(0, 65535, 123, 0xABCDEF, b"\x01\x02")
    parsed = audio.parse_rtp(packet)
    assert parsed is not None and (parsed.seq, parsed.timestamp, parsed.payload) == (65535, 123, b"\x01\x02")
    assert audio.parse_rtp(b"\x80\xc8" + b"\x00" * 10) is None  # RTCP SR
    assert audio.parse_rtp(b"\x90\x00" + b"\x00" * 10 + b"\x00\x00\xff\xff") is None  # extension past the end


def test_plain_offer_and_answer() -> None:
    assert audio.sdp_kind(OFFER) == "plain"
    offer = audio.parse_plain_offer(OFFER)
    assert (offer.address, offer.port, offer.telephone_event) == ("10.1.1.1", 4000, 101)
    assert audio.choose_g711(offer) == audio.PCMA
    answer = audio.plain_answer(offer, audio.PCMA, "192.0.2.5", 30000, 7)
    assert "m=audio 30000 RTP/AVP 8 101" in answer and "c=IN IP4 192.0.2.5" in answer
    assert audio.sdp_kind("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AA\r\n") == "webrtc"
    assert audio.sdp_kind("v=0\r\nm=video 9 RTP/AVP 96\r\n") == "unsupported"
    with pytest.raises(ValueError):
        audio.parse_plain_offer("v=0\r\nm=audio x RTP/AVP 0\r\n")


WEBRTC_OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 126 13\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\n"
    "a=rtpmap:126 telephone-event/8000\r\na=rtpmap:13 CN/8000\r\na=fingerprint:sha-256 AA\r\n"
)


def test_telephone_event_at_48k_found_and_added_to_the_answer() -> None:
    assert audio.telephone_event_pt(WEBRTC_OFFER) is None  # only the 8 kHz one
    offer = WEBRTC_OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 126 13",
                                 "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 110 126 13")
    offer = offer.replace("a=rtpmap:126", "a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126")
    assert audio.telephone_event_pt(offer) == 110
    # a telephone-event not in the m-line's formats, or outside the dynamic range, is not taken
    assert audio.telephone_event_pt(offer.replace(" 110 126", " 126")) is None
    answer = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
              "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 BB\r\n")
    out = audio.with_telephone_event(answer, 110)
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\n" in out
    assert "a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n" in out
    assert audio.with_telephone_event(out, 110) == out
