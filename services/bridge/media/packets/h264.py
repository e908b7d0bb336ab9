"""H.264 key-frame detection in RTP payloads (RFC 6184 section 5): single NAL unit packets,
STAP-A aggregates and FU-A fragments. A packet starts a key frame when it carries an IDR slice
(NAL type 5) or a sequence parameter set (7, which Chrome sends just before an IDR), or is the
first fragment (S bit) of one.

Bounded: a STAP-A is walked for at most :data:`MAX_STAP_UNITS` units and never past the payload;
malformed input answers ``False``, never raises.
"""

from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
STAP_A = 24
FU_A = 28
KEY_NAL_TYPES = frozenset({NAL_IDR, NAL_SPS})
MAX_STAP_UNITS = 64


def nal_type(byte: int) -> int:
    return byte & 0x1F


def is_keyframe(buf: bytes | bytearray | memoryview, offset: int, end: int) -> bool:
    """Whether the RTP payload ``buf[offset:end]`` starts an H.264 key frame."""
    if offset < 0 or end > len(buf) or offset >= end:
        return False
    kind = nal_type(buf[offset])
    if kind in KEY_NAL_TYPES:
        return True
    if kind == FU_A:
        if offset + 1 >= end:
            return False
        fu = buf[offset + 1]
        return bool(fu & 0x80) and nal_type(fu) in KEY_NAL_TYPES
    if kind == STAP_A:
        i = offset + 1
        for _ in range(MAX_STAP_UNITS):
            if i + 2 >= end:
                return False
            size = (buf[i] << 8) | buf[i + 1]
            i += 2
            if size == 0 or i + size > end:
                return False
            if nal_type(buf[i]) in KEY_NAL_TYPES:
                return True
            i += size
    return False
