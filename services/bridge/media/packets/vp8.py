"""VP8 RTP payload descriptor (RFC 7741 section 4.2) and VP8 key-frame header (RFC 6386 9.1).

Read and rewritten in place on the packet's bytes, for the simulcast projection: which frame a
packet belongs to, whether it starts a key frame (and at what resolution), and rewriting the
picture id and TL0PICIDX so a receiver sees one continuous stream across layer switches::

     0 1 2 3 4 5 6 7
    +-+-+-+-+-+-+-+-+
    |X|R|N|S|R| PID |   required
    +-+-+-+-+-+-+-+-+
    |I|L|T|K| RSV   |   if X
    +-+-+-+-+-+-+-+-+
    |M| PictureID   |   if I (M=1: 15-bit picture id over two bytes)
    |   PictureID   |
    +-+-+-+-+-+-+-+-+
    |   TL0PICIDX   |   if L
    +-+-+-+-+-+-+-+-+
    |TID|Y| KEYIDX  |   if T or K
    +-+-+-+-+-+-+-+-+

No I/O, no objects per packet beyond a small tuple; offsets index the whole RTP packet.
"""

from __future__ import annotations

from typing import NamedTuple

from .picture_id import read_picture_id

VP8_KEYFRAME_START_CODE = b"\x9d\x01\x2a"


class Vp8Descriptor(NamedTuple):
    """The fields of one packet's payload descriptor (-1 where the field is absent)."""

    size: int
    """Descriptor length in bytes; the VP8 payload starts after it."""
    start_of_frame: bool
    """S=1 and partition index 0: the first packet of a frame."""
    picture_id: int
    picture_id_bits: int
    """0 (absent), 7 or 15."""
    tl0picidx: int
    tid: int
    layer_sync: bool


def parse_descriptor(buf: bytes | bytearray | memoryview, offset: int, end: int) -> Vp8Descriptor | None:
    """The descriptor at ``buf[offset:end]`` (the RTP payload), or ``None`` when truncated."""
    if offset >= end:
        return None
    first = buf[offset]
    i = offset + 1
    picture_id = -1
    pid_bits = 0
    tl0 = -1
    tid = -1
    sync = False
    if first & 0x80:  # X
        if i >= end:
            return None
        ext = buf[i]
        i += 1
        if ext & 0x80:  # I
            pid = read_picture_id(buf, i, end)
            if pid is None:
                return None
            picture_id, pid_bits, i = pid
        if ext & 0x40:  # L
            if i >= end:
                return None
            tl0 = buf[i]
            i += 1
        if ext & 0x30:  # T or K
            if i >= end:
                return None
            if ext & 0x20:
                tid = buf[i] >> 6
                sync = bool(buf[i] & 0x20)
            i += 1
    start = bool(first & 0x10) and (first & 0x07) == 0  # R bits ignored (RFC 7741 4.2)
    return Vp8Descriptor(i - offset, start, picture_id, pid_bits, tl0, tid, sync)


def is_keyframe_start(buf: bytes | bytearray | memoryview, payload_offset: int, end: int) -> bool:
    """True when the packet (RTP payload at ``payload_offset``) starts a VP8 key frame."""
    desc = parse_descriptor(buf, payload_offset, end)
    if desc is None or not desc.start_of_frame:
        return False
    vp8 = payload_offset + desc.size
    return vp8 < end and buf[vp8] & 0x01 == 0  # P bit 0: key frame


def keyframe_size(
    buf: bytes | bytearray | memoryview, payload_offset: int, end: int
) -> tuple[int, int] | None:
    """(width, height) from the key-frame header the packet starts, else ``None``."""
    desc = parse_descriptor(buf, payload_offset, end)
    if desc is None or not desc.start_of_frame:
        return None
    vp8 = payload_offset + desc.size
    if vp8 + 10 > end or buf[vp8] & 0x01 or bytes(buf[vp8 + 3 : vp8 + 6]) != VP8_KEYFRAME_START_CODE:
        return None
    width = (buf[vp8 + 6] | (buf[vp8 + 7] << 8)) & 0x3FFF
    height = (buf[vp8 + 8] | (buf[vp8 + 9] << 8)) & 0x3FFF
    return width, height


def rewrite_descriptor(
    buf: bytearray | memoryview, payload_offset: int, desc: Vp8Descriptor, picture_id: int, tl0picidx: int
) -> None:
    """Write ``picture_id`` (wrapped to the field's width) and ``tl0picidx`` (mod 256) in place,
    where the descriptor ``desc`` (parsed from this packet) has those fields."""
    i = payload_offset + 2  # after the required byte and the X byte
    if desc.picture_id_bits == 15:
        picture_id &= 0x7FFF
        buf[i] = 0x80 | (picture_id >> 8)
        buf[i + 1] = picture_id & 0xFF
        i += 2
    elif desc.picture_id_bits == 7:
        buf[i] = picture_id & 0x7F
        i += 1
    if desc.tl0picidx >= 0:
        buf[i] = tl0picidx & 0xFF
