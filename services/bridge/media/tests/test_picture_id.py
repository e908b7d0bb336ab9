"""The picture ID field shared by the VP8 and VP9 payload descriptors (RFC 7741 4.2, RFC 9628 4.2)."""

from __future__ import annotations

from services.bridge.media.packets.picture_id import read_picture_id


def test_seven_bit_picture_id() -> None:
    assert read_picture_id(b"\x00\x55\x99", 1, 3) == (0x55, 7, 2)


def test_fifteen_bit_picture_id() -> None:
    assert read_picture_id(b"\x00\x81\x23", 1, 3) == (0x0123, 15, 3)


def test_truncated_picture_id_is_none() -> None:
    assert read_picture_id(b"\x00", 1, 1) is None
    assert read_picture_id(b"\x00\x81\x23", 1, 2) is None  # M=1, second byte past the end
