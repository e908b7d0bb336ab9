"""RTP header reading and rewriting with ``struct`` (RFC 3550, 8285, 4588, 6464), no packet objects.

The one place in the bridge that knows the RTP header layout: the forwarder, the speaker detector,
the simulcast projection and the conference policy read sequence numbers, timestamps, payload
bounds and header extensions through these functions. The forwarding path works on ``bytes`` (or
a ``bytearray`` it rewrites in place) and touches only the fixed header fields it changes.
"""

from __future__ import annotations

import struct

_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_SEQ = struct.Struct("!H")
_SEQ_TS_SSRC = struct.Struct("!HII")
_PT_SEQ_TS_SSRC = struct.Struct("!BHII")
_TS = struct.Struct("!I")
_SEQ_TS = struct.Struct("!HI")
_EXT_HEADER = struct.Struct("!HH")

ONE_BYTE_PROFILE = 0xBEDE
"""RFC 8285 one-byte header extension form."""
TWO_BYTE_PROFILE = 0x1000
"""RFC 8285 two-byte form (the low four bits are application bits)."""

RTP_HEADER_SIZE = 12

unpack_header = _HEADER.unpack_from
"""``(v_p_x_cc, m_pt, sequence_number, timestamp, ssrc)`` of a packet of at least 12 bytes, without
a Python call: for the packet path, which checks the length itself; the payload type is
``m_pt & PAYLOAD_TYPE_MASK``."""
PAYLOAD_TYPE_MASK = 0x7F
"""The payload type's bits in the marker/payload-type byte (RFC 3550 section 5.1)."""
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


class RtpError(ValueError):
    """Not a well-formed RTP packet."""


def is_rtcp(datagram: bytes) -> bool:
    """RFC 5761 section 4: RTCP packet types 192-223 occupy the RTP payload-type byte."""
    return len(datagram) >= 2 and 192 <= datagram[1] <= 223


def header_fields(packet: bytes) -> tuple[int, int, int, int, int]:
    """``(payload_type, marker, sequence_number, timestamp, ssrc)``."""
    if len(packet) < RTP_HEADER_SIZE or packet[0] >> 6 != 2:
        raise RtpError("not an RTP version 2 packet")
    _, b1, seq, ts, ssrc = _HEADER.unpack_from(packet)
    return b1 & 0x7F, b1 >> 7, seq, ts, ssrc


def build_header(payload_type: int, marker: bool, seq: int, ts: int, ssrc: int) -> bytes:
    """A 12-byte RTP header (no CSRCs, no extension); ``seq`` and ``ts`` are wrapped."""
    return _HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)


def payload_type(packet: bytes | bytearray | memoryview) -> int:
    return packet[1] & PAYLOAD_TYPE_MASK


def set_payload_type(packet: bytearray, pt: int) -> None:
    """Change the payload type in place, keeping the marker bit."""
    packet[1] = (packet[1] & 0x80) | (pt & 0x7F)


def has_marker(packet: bytes | bytearray | memoryview) -> bool:
    """The marker bit (M, RFC 3550 section 5.1)."""
    return packet[1] & 0x80 != 0


def set_marker(packet: bytearray) -> None:
    """Set the marker bit in place (a payload rewrite: ``mapping.PayloadRewrite``)."""
    packet[1] |= 0x80


def sequence_number(packet: bytes | bytearray | memoryview) -> int:
    return _SEQ.unpack_from(packet, 2)[0]


def timestamp(packet: bytes | bytearray | memoryview) -> int:
    return _TS.unpack_from(packet, 4)[0]


def sequence_number_and_timestamp(packet: bytes | bytearray | memoryview) -> tuple[int, int]:
    seq, ts = _SEQ_TS.unpack_from(packet, 2)
    return seq, ts


def is_newer_seq(a: int, b: int) -> bool:
    """Sequence number ``a`` comes after ``b`` (mod 2^16, RFC 3550 A.1)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def payload_bounds(packet: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(payload offset, payload end) of an RTP packet: after CSRCs and the header extension,
    before padding; (-1, -1) when malformed. Never raises."""
    n = len(packet)
    if n < RTP_HEADER_SIZE:
        return -1, -1
    first = packet[0]
    offset = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if first & 0x10:
        if offset + 4 > n:
            return -1, -1
        offset += 4 + 4 * ((packet[offset + 2] << 8) | packet[offset + 3])
    end = n
    if first & 0x20:
        end -= packet[n - 1]
    if offset > end:
        return -1, -1
    return offset, end


def header_length(packet: bytes | bytearray) -> int:
    """Fixed header, CSRCs and the header extension block. Raises :class:`RtpError` when the
    packet is shorter than that."""
    if len(packet) < RTP_HEADER_SIZE:
        raise RtpError("truncated RTP header")
    length = RTP_HEADER_SIZE + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < length + 4:
            raise RtpError("truncated header extension")
        words = _SEQ.unpack_from(packet, length + 2)[0]
        length += 4 + 4 * words
    if len(packet) < length:
        raise RtpError("truncated RTP header")
    return length


def rewrite(packet: bytes, seq: int, ts: int, ssrc: int) -> bytes:
    """A copy of ``packet`` with new sequence number, timestamp and SSRC."""
    out = bytearray(packet)
    _SEQ_TS_SSRC.pack_into(out, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    return bytes(out)


def rewrite_in_place(packet: bytearray, seq: int, ts: int, ssrc: int) -> None:
    """Set the sequence number, timestamp (both wrapped) and SSRC of ``packet``."""
    _SEQ_TS_SSRC.pack_into(packet, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)


def locate_extension(packet: bytes | bytearray | memoryview, ext_id: int) -> tuple[int, int, int]:
    """``(element start, value offset, value length)`` of header extension element ``ext_id``
    (one-byte or two-byte form, RFC 8285), or ``(-1, -1, 0)`` when absent, when the block is
    malformed (an element running past it, a one-byte id 15) or the packet is truncated. Never
    raises."""
    n = len(packet)
    if n < RTP_HEADER_SIZE or not packet[0] & 0x10:
        return -1, -1, 0
    start = RTP_HEADER_SIZE + 4 * (packet[0] & 0x0F)
    if n < start + 4:
        return -1, -1, 0
    profile, words = _EXT_HEADER.unpack_from(packet, start)
    pos = start + 4
    end = pos + 4 * words
    if end > n:
        return -1, -1, 0
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = packet[pos]
            if byte == 0:  # padding
                pos += 1
                continue
            eid, length = byte >> 4, (byte & 0x0F) + 1
            if eid == 15 or pos + 1 + length > end:  # 15: stop parsing (RFC 8285 4.2)
                return -1, -1, 0
            if eid == ext_id:
                return pos, pos + 1, length
            pos += 1 + length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while pos < end:
            eid = packet[pos]
            if eid == 0:
                pos += 1
                continue
            if pos + 1 >= end:
                return -1, -1, 0
            length = packet[pos + 1]
            if pos + 2 + length > end:
                return -1, -1, 0
            if eid == ext_id:
                return pos, pos + 2, length
            pos += 2 + length
    return -1, -1, 0


def find_extension(packet: bytes | bytearray | memoryview, ext_id: int) -> bytes | None:
    """The value of header extension element ``ext_id`` (see :func:`locate_extension`), ``None``
    when it has none. Never raises."""
    _, value, length = locate_extension(packet, ext_id)
    return None if value < 0 else bytes(packet[value : value + length])


def audio_level(packet: bytes | bytearray | memoryview, ext_id: int) -> tuple[int, bool] | None:
    """RFC 6464: ``(level in -dBov 0..127, voice activity flag)``; ``None`` without the element
    (or with an empty one)."""
    value = find_extension(packet, ext_id)
    if not value:
        return None
    return value[0] & 0x7F, bool(value[0] & 0x80)


def wrap_rtx(
    packet: bytes | bytearray, rtx_payload_type: int, rtx_seq: int, rtx_ssrc: int, original_seq: int
) -> bytes:
    """RFC 4588: the RTX packet retransmitting ``packet`` (its original sequence number, OSN,
    first in the payload; the marker bit is kept)."""
    hlen = header_length(packet)
    end = len(packet)
    if packet[0] & 0x20:  # drop padding; the RTX packet carries none
        end -= packet[-1]
    out = bytearray(packet[:hlen])
    out[0] &= 0xDF
    _PT_SEQ_TS_SSRC.pack_into(
        out,
        1,
        (packet[1] & 0x80) | rtx_payload_type,
        rtx_seq & 0xFFFF,
        _HEADER.unpack_from(packet)[3],
        rtx_ssrc,
    )
    out += _SEQ.pack(original_seq & 0xFFFF)
    out += packet[hlen:end]
    return bytes(out)


def unwrap_rtx(packet: bytes, media_payload_type: int, media_ssrc: int) -> bytes:
    """The original packet inside an RTX packet (RFC 4588 section 4)."""
    hlen = header_length(packet)
    end = len(packet)
    if packet[0] & 0x20:
        end -= packet[-1]
    if end - hlen < 2:
        raise RtpError("RTX packet without original sequence number")
    osn = _SEQ.unpack_from(packet, hlen)[0]
    out = bytearray(packet[:hlen])
    out[0] &= 0xDF
    _PT_SEQ_TS_SSRC.pack_into(
        out, 1, (packet[1] & 0x80) | media_payload_type, osn, _HEADER.unpack_from(packet)[3], media_ssrc
    )
    out += packet[hlen + 2 : end]
    return bytes(out)
