"""RTP payload for redundant audio data (RFC 2198), as Chrome sends Opus with RED.

::

     0                   1                   2                   3
    |F|   block PT  |  timestamp offset         |   block length    |   F=1: a redundant block
    |0|   block PT  |                                                   F=0: the primary block

The block headers come first, then the blocks in the same order; the primary (the newest
encoding) is last. :func:`parse` is bounded (:data:`MAX_BLOCKS` headers, every length checked
against the payload's end) and answers ``None`` for malformed input; :func:`strip_to_primary`
rewrites a packet in place to carry only the primary payload under its own payload type, for a
receiver that did not negotiate RED.
"""

from __future__ import annotations

from typing import NamedTuple

from . import rtp

MAX_BLOCKS = 16


class RedPayload(NamedTuple):
    primary_pt: int
    primary_start: int
    """Offset of the primary block in the packet (it runs to the payload's end)."""
    redundant: tuple[tuple[int, int, int, int], ...]
    """(payload type, timestamp offset, start, length) of each redundant block, oldest first."""


def parse(buf: bytes | bytearray | memoryview, offset: int, end: int) -> RedPayload | None:
    """The RED payload at ``buf[offset:end]``, or ``None`` when malformed."""
    if offset < 0 or end > len(buf) or offset >= end:
        return None
    i = offset
    headers: list[tuple[int, int, int]] = []
    while True:
        if i >= end:
            return None
        first = buf[i]
        if not first & 0x80:  # the final header: the primary block
            primary_pt = first & 0x7F
            i += 1
            break
        if len(headers) >= MAX_BLOCKS or i + 4 > end:
            return None
        ts_offset = (buf[i + 1] << 6) | (buf[i + 2] >> 2)
        length = ((buf[i + 2] & 0x03) << 8) | buf[i + 3]
        headers.append((first & 0x7F, ts_offset, length))
        i += 4
    blocks = []
    for pt, ts_offset, length in headers:
        if i + length > end:
            return None
        blocks.append((pt, ts_offset, i, length))
        i += length
    if i > end:
        return None
    return RedPayload(primary_pt, i, tuple(blocks))


def primary_payload(buf: bytes | bytearray | memoryview, offset: int, end: int) -> bytes | None:
    """The primary (newest) encoding inside a RED payload, ``None`` when malformed."""
    red = parse(buf, offset, end)
    if red is None:
        return None
    return bytes(buf[red.primary_start : end])


def strip_to_primary(packet: bytearray, offset: int, end: int) -> bool:
    """Rewrite ``packet`` (its RED payload at ``packet[offset:end]``) in place to carry only
    its primary block, with the primary's payload type; False (unchanged) when malformed."""
    red = parse(packet, offset, end)
    if red is None:
        return False
    rtp.set_payload_type(packet, red.primary_pt)
    del packet[offset : red.primary_start]
    return True
