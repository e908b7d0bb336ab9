"""The picture ID field that VP8 (RFC 7741 section 4.2) and VP9 (RFC 9628 section 4.2) payload
descriptors share: one byte ``M|7 bits``, or with M=1 two bytes ``M|15 bits``. No I/O."""

from __future__ import annotations


def read_picture_id(buf: bytes | bytearray | memoryview, i: int, end: int) -> tuple[int, int, int] | None:
    """``(picture id, its width in bits (7 or 15), offset after it)`` of the field at ``buf[i]``,
    or ``None`` when it runs past ``end``."""
    if i >= end:
        return None
    if buf[i] & 0x80:  # M: 15 bits
        if i + 1 >= end:
            return None
        return ((buf[i] & 0x7F) << 8) | buf[i + 1], 15, i + 2
    return buf[i] & 0x7F, 7, i + 1
