from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor

from services.bridge.media.packets.vp8 import (
    Vp8Descriptor,
    is_keyframe_start,
    keyframe_size,
    parse_descriptor,
    rewrite_descriptor,
)


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (VpxPayloadDescriptor(1, 0), Vp8Descriptor(1, True, -1, 0, -1, -1, False)),
        (VpxPayloadDescriptor(0, 0), Vp8Descriptor(1, False, -1, 0, -1, -1, False)),
        (VpxPayloadDescriptor(1, 1), Vp8Descriptor(1, False, -1, 0, -1, -1, False)),  # later partition
        (VpxPayloadDescriptor(1, 0, picture_id=17000), Vp8Descriptor(4, True, 17000, 15, -1, -1, False)),
        (
            VpxPayloadDescriptor(1, 0, picture_id=5, tl0picidx=200, tid=(2, 1)),
            Vp8Descriptor(6, True, 5, 15, 200, 2, True),
        ),
        (VpxPayloadDescriptor(0, 0, tl0picidx=9, keyidx=3), Vp8Descriptor(4, False, -1, 0, 9, -1, False)),
    ],
)
def test_parse_matches_aiortc_serializer(descriptor: VpxPayloadDescriptor, expected: Vp8Descriptor) -> None:
    raw = b"\x00" * 12 + bytes(descriptor) + b"payload"
    assert parse_descriptor(raw, 12, len(raw)) == expected


def test_seven_bit_picture_id() -> None:
    raw = bytes([0x90, 0x80, 0x2A, 0x00])
    assert parse_descriptor(raw, 0, len(raw)) == Vp8Descriptor(3, True, 0x2A, 7, -1, -1, False)


@pytest.mark.parametrize("raw", [b"", b"\x90", b"\x90\x80", b"\x90\x80\x80", b"\x90\x40", b"\x90\x20"])
def test_truncated_descriptor_is_none(raw: bytes) -> None:
    assert parse_descriptor(raw, 0, len(raw)) is None


def test_rewrite_in_place_round_trips_through_aiortc_parser() -> None:
    buf = bytearray(bytes(VpxPayloadDescriptor(1, 0, picture_id=32767, tl0picidx=255, tid=(1, 0))) + b"\x10")
    desc = parse_descriptor(buf, 0, len(buf))
    assert desc is not None
    rewrite_descriptor(buf, 0, desc, 32768 + 3, 256 + 7)  # wraps
    parsed, rest = VpxPayloadDescriptor.parse(bytes(buf))
    assert (parsed.picture_id, parsed.tl0picidx, parsed.tid) == (3, 7, (1, 0))
    assert rest == b"\x10"


def _encoded_frames(width: int, height: int, count: int) -> list[list[bytes]]:
    encoder = Vp8Encoder()
    frames = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), i * 9 % 255, np.uint8), format="rgb24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame)
        frames.append(payloads)
    return frames


def test_keyframe_detection_and_size_on_real_vp8() -> None:
    frames = _encoded_frames(320, 180, 3)
    first = frames[0][0]
    assert is_keyframe_start(first, 0, len(first))
    assert keyframe_size(first, 0, len(first)) == (320, 180)
    delta = frames[1][0]
    assert not is_keyframe_start(delta, 0, len(delta))
    assert keyframe_size(delta, 0, len(delta)) is None
    if len(frames[0]) > 1:  # a continuation packet of the key frame is not its start
        cont = frames[0][1]
        assert not is_keyframe_start(cont, 0, len(cont))
