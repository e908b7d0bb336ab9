"""Transport-wide congestion control: the RTP header extension and the RTCP feedback packet
(draft-holmer-rmcat-transport-wide-cc-extensions-01), no I/O.

The header extension element carries a 16-bit transport-wide sequence number, one counter for
every RTP packet on the transport (section 2). The feedback (RTPFB, FMT 15, section 3.1) reports,
from ``base_seq`` on, ``count`` packet statuses and, for each received packet, its receive delta:

* reference time: 24-bit signed, in multiples of 64 ms (the arrival-time base of this packet);
* feedback packet count: 8 bits, incremented per feedback packet sent;
* packet chunks: run-length (``0 S(2) len(13)``) or status vector (``1 0 14x1-bit`` or
  ``1 1 7x2-bit``), symbols 0 not received, 1 small delta, 2 large or negative delta;
* receive deltas in 250 µs units: one unsigned byte for a small delta, a signed 16-bit word for a
  large one; the first relative to the reference time, each next one to the previous received
  packet.

The encoder chooses chunks the way libwebrtc's ``TransportFeedback`` does (a run-length chunk
while statuses repeat, else a 2-bit vector of 7, or a 1-bit vector of 14 when no large delta).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .rtcp import RTPFB, RtcpError
from .rtp import locate_extension

URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
FMT_TRANSPORT_CC = 15

NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2
DELTA_TICK_US = 250
REFERENCE_TICK_US = 64_000
MAX_STATUS_COUNT = 0xFFFF
MAX_RUN_LENGTH = 0x1FFF
MAX_ONE_BIT = 14
MAX_TWO_BIT = 7
MAX_PACKET_BYTES = 1200
"""Feedback packets are kept below this (a typical MTU less IP/UDP/SRTCP overhead)."""

_HEAD = struct.Struct("!BBHIIHHI")  # V/P/FMT, PT, length, sender ssrc, media ssrc, base, count, ref|fb
_LARGE = struct.Struct("!h")


@dataclass(frozen=True)
class Feedback:
    """One parsed feedback packet. ``received`` maps each reported-received transport-wide
    sequence number (16-bit) to its arrival time in µs since the sender's reference clock
    (``reference_time * 64 ms`` plus the deltas), in report order."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    count: int
    reference_time: int  # 64 ms units, sign-extended
    feedback_count: int
    received: tuple[tuple[int, int], ...]  # (seq, arrival µs)

    @property
    def lost(self) -> int:
        return self.count - len(self.received)


# ---------------------------------------------------------------------------- header extension


def find_sequence(packet: bytes | bytearray, ext_id: int) -> tuple[int, int]:
    """``(element start, value offset)`` of the two-byte element ``ext_id`` in ``packet``'s
    header extension block (one-byte or two-byte form, RFC 8285), or ``(-1, -1)`` when absent,
    of another length, or the block is malformed. Never raises."""
    element, value, length = locate_extension(packet, ext_id)
    return (element, value) if value >= 0 and length == 2 else (-1, -1)


def take_sequence(packet: bytes, ext_id: int) -> tuple[int | None, bytes]:
    """The transport-wide sequence number ``packet`` carries in element ``ext_id`` (``None``
    without one), and the packet with that element turned into padding (RFC 8285 4.2/4.3: zero
    bytes between elements): the number counts the sender's own transport, so what the bridge
    forwards must not carry it to a receiver, whose feedback would then be about someone else's
    numbering."""
    element, value = find_sequence(packet, ext_id)
    if value < 0:
        return None, packet
    seq = (packet[value] << 8) | packet[value + 1]
    return seq, packet[:element] + bytes(value + 2 - element) + packet[value + 2 :]


# ---------------------------------------------------------------------------- parsing


def parse_feedback(packet: bytes) -> Feedback:
    """Parse one RTPFB FMT 15 packet (as yielded by :func:`.rtcp.iter_packets`). Raises
    :class:`~.rtcp.RtcpError` on anything malformed: too short, statuses or deltas running past
    the packet, a reserved symbol. Work is bounded by the packet's length (at most 8 statuses per
    byte of chunks, each chunk two bytes)."""
    size = len(packet)
    if size < 20:
        raise RtcpError("short transport-cc feedback")
    first, ptype, _, sender, media, base, count, ref_fb = _HEAD.unpack_from(packet)
    if ptype != RTPFB or first & 0x1F != FMT_TRANSPORT_CC:
        raise RtcpError("not a transport-cc feedback")
    end = size
    if first & 0x20:
        pad = packet[-1]
        if pad == 0 or pad > size - 20:
            raise RtcpError("bad transport-cc padding")
        end -= pad
    reference = ref_fb >> 8
    if reference & 0x800000:
        reference -= 0x1000000
    # statuses as runs, so that a long run of lost packets costs nothing: the work is bounded
    # by the packet's bytes (two per chunk, at least one per received packet), not by the count
    runs: list[tuple[int, int]] = []  # (symbol, length)
    covered = 0
    pos = 20
    while covered < count:
        if pos + 2 > end:
            raise RtcpError("transport-cc chunks run past the packet")
        chunk = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
        if not chunk & 0x8000:
            symbol = (chunk >> 13) & 0x3
            length = min(chunk & 0x1FFF, count - covered)
            if symbol == 3 and length:
                raise RtcpError("reserved transport-cc status")
            if length:
                runs.append((symbol, length))
                covered += length
        elif not chunk & 0x4000:
            for bit in range(13, -1, -1):
                if covered < count:
                    runs.append(((chunk >> bit) & 1, 1))
                    covered += 1
        else:
            for shift in range(12, -1, -2):
                if covered < count:
                    symbol = (chunk >> shift) & 3
                    if symbol == 3:
                        raise RtcpError("reserved transport-cc status")
                    runs.append((symbol, 1))
                    covered += 1
    time_us = reference * REFERENCE_TICK_US
    received: list[tuple[int, int]] = []
    index = 0
    for symbol, length in runs:
        if symbol == NOT_RECEIVED:
            index += length
            continue
        for _ in range(length):
            if symbol == SMALL_DELTA:
                if pos + 1 > end:
                    raise RtcpError("transport-cc deltas run past the packet")
                time_us += packet[pos] * DELTA_TICK_US
                pos += 1
            else:
                if pos + 2 > end:
                    raise RtcpError("transport-cc deltas run past the packet")
                time_us += _LARGE.unpack_from(packet, pos)[0] * DELTA_TICK_US
                pos += 2
            received.append(((base + index) & 0xFFFF, time_us))
            index += 1
    return Feedback(sender, media, base, count, reference, ref_fb & 0xFF, tuple(received))


# ---------------------------------------------------------------------------- building


def _run_length(symbol: int, run: int) -> int:
    return (symbol << 13) | run


def _encode_chunks(symbols: list[int]) -> list[int]:
    """Packet chunks for ``symbols``, as libwebrtc's ``TransportFeedback::LastChunk`` packs them."""
    chunks: list[int] = []
    pending: list[int] = []
    all_same = True
    has_large = False

    def two_bit(items: list[int]) -> int:
        word = 0xC000
        for i, s in enumerate(items):
            word |= s << (12 - 2 * i)
        return word

    def one_bit(items: list[int]) -> int:
        word = 0x8000
        for i, s in enumerate(items):
            word |= s << (13 - i)
        return word

    for symbol in symbols:
        n = len(pending)
        can_add = (
            n < MAX_TWO_BIT
            or (n < MAX_ONE_BIT and not has_large and symbol != LARGE_DELTA)
            or (n < MAX_RUN_LENGTH and all_same and pending[0] == symbol)
        )
        if not can_add:
            if all_same:
                chunks.append(_run_length(pending[0], n))
                pending = []
            elif n == MAX_ONE_BIT:
                chunks.append(one_bit(pending))
                pending = []
            else:
                chunks.append(two_bit(pending[:MAX_TWO_BIT]))
                pending = pending[MAX_TWO_BIT:]
            all_same = all(s == pending[0] for s in pending) if pending else True
            has_large = LARGE_DELTA in pending
        if pending and symbol != pending[0]:
            all_same = False
        pending.append(symbol)
        has_large = has_large or symbol == LARGE_DELTA
    if pending:
        if all_same:
            chunks.append(_run_length(pending[0], len(pending)))
        elif len(pending) <= MAX_TWO_BIT:
            chunks.append(two_bit(pending))
        else:
            chunks.append(one_bit(pending))
    return chunks


def build_feedback(
    sender_ssrc: int,
    media_ssrc: int,
    base_seq: int,
    reference_time: int,
    feedback_count: int,
    statuses: list[int | None],
) -> bytes:
    """A feedback packet for ``statuses``: one entry per sequence number from ``base_seq`` on,
    ``None`` for a packet not received, else its receive delta in 250 µs ticks (the first relative
    to ``reference_time * 64 ms``, each next to the previous received packet). Deltas outside
    -32768..32767 ticks raise ``ValueError`` (the caller starts a new packet before one)."""
    if len(statuses) > MAX_STATUS_COUNT:
        raise ValueError("too many statuses for one transport-cc feedback")
    symbols: list[int] = []
    deltas = bytearray()
    for delta in statuses:
        if delta is None:
            symbols.append(NOT_RECEIVED)
        elif 0 <= delta <= 0xFF:
            symbols.append(SMALL_DELTA)
            deltas.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbols.append(LARGE_DELTA)
            deltas += _LARGE.pack(delta)
        else:
            raise ValueError(f"receive delta {delta} ticks does not fit 16 bits")
    chunks = _encode_chunks(symbols)
    body = b"".join(c.to_bytes(2, "big") for c in chunks) + bytes(deltas)
    size = 20 + len(body)
    pad = -size % 4
    first = 0x80 | FMT_TRANSPORT_CC
    if pad:
        first |= 0x20
        body += b"\x00" * (pad - 1) + bytes([pad])
    return (
        _HEAD.pack(
            first,
            RTPFB,
            (size + pad) // 4 - 1,
            sender_ssrc,
            media_ssrc,
            base_seq & 0xFFFF,
            len(statuses),
            ((reference_time & 0xFFFFFF) << 8) | (feedback_count & 0xFF),
        )
        + body
    )
