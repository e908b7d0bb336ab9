"""RTCP packets the bridge reads and writes (RFC 3550, 4585, 5104, draft-alvestrand-rmcat-remb).

Parsing yields small tuples; building returns ``bytes``. Reception statistics for receiver
reports live here too (:class:`ReceptionStats`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206
FMT_NACK = 1
FMT_PLI, FMT_FIR, FMT_REMB = 1, 4, 15

_COMMON = struct.Struct("!BBH")
_FB = struct.Struct("!BBHII")
_SR_INFO = struct.Struct("!IIIIII")  # ssrc, ntp msw, ntp lsw, rtp ts, packets, octets
_REPORT = struct.Struct("!IIIIII")


class RtcpError(ValueError):
    """Not a well-formed RTCP compound packet."""


def iter_packets(compound: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(packet_type, count_or_fmt, packet_bytes)`` for each packet of a compound packet."""
    pos = 0
    size = len(compound)
    while pos < size:
        if size - pos < 4:
            raise RtcpError("truncated RTCP header")
        first, ptype, words = _COMMON.unpack_from(compound, pos)
        if first >> 6 != 2:
            raise RtcpError("not RTCP version 2")
        length = 4 * (words + 1)
        if pos + length > size:
            raise RtcpError("RTCP length beyond datagram")
        yield ptype, first & 0x1F, compound[pos : pos + length]
        pos += length


@dataclass(frozen=True)
class SenderReport:
    ssrc: int
    ntp: int  # 64-bit NTP timestamp
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(frozen=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


def parse_sr(packet: bytes) -> SenderReport:
    if len(packet) < 28:
        raise RtcpError("short SR")
    ssrc, msw, lsw, ts, packets, octets = _SR_INFO.unpack_from(packet, 4)
    return SenderReport(ssrc, (msw << 32) | lsw, ts, packets, octets)


def parse_report_blocks(packet: bytes, count: int, offset: int) -> list[ReportBlock]:
    blocks = []
    for i in range(count):
        pos = offset + 24 * i
        if pos + 24 > len(packet):
            raise RtcpError("truncated report block")
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT.unpack_from(packet, pos)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr))
    return blocks


def feedback_ssrcs(packet: bytes) -> tuple[int, int]:
    """``(sender_ssrc, media_ssrc)`` of a transport/payload-specific feedback packet."""
    if len(packet) < 12:
        raise RtcpError("short feedback packet")
    _, _, _, sender, media = _FB.unpack_from(packet)
    return sender, media


def parse_nack(packet: bytes) -> list[int]:
    """Lost sequence numbers of a generic NACK (RFC 4585 section 6.2.1)."""
    lost = []
    for pos in range(12, len(packet) - 3, 4):
        pid, blp = struct.unpack_from("!HH", packet, pos)
        lost.append(pid)
        for bit in range(16):
            if blp & (1 << bit):
                lost.append((pid + bit + 1) & 0xFFFF)
    return lost


def parse_fir_ssrcs(packet: bytes) -> list[int]:
    """Media SSRCs a FIR (RFC 5104 section 4.3.1) asks a keyframe for."""
    return [struct.unpack_from("!I", packet, pos)[0] for pos in range(12, len(packet) - 7, 8)]


def parse_remb(packet: bytes) -> tuple[int, list[int]] | None:
    """``(bitrate_bps, ssrcs)`` of a REMB packet, ``None`` for other application feedback."""
    if len(packet) < 20 or packet[12:16] != b"REMB":
        return None
    count, b1, b2, b3 = struct.unpack_from("!BBBB", packet, 16)
    exponent = b1 >> 2
    mantissa = ((b1 & 0x03) << 16) | (b2 << 8) | b3
    ssrcs = [
        struct.unpack_from("!I", packet, 20 + 4 * i)[0] for i in range(count) if 24 + 4 * i <= len(packet)
    ]
    return mantissa << exponent, ssrcs


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _FB.pack(0x80 | FMT_PLI, PSFB, 2, sender_ssrc, media_ssrc)


def build_fir(sender_ssrc: int, media_ssrc: int, seq_nr: int) -> bytes:
    return _FB.pack(0x80 | FMT_FIR, PSFB, 4, sender_ssrc, 0) + struct.pack(
        "!IBxxx", media_ssrc, seq_nr & 0xFF
    )


def build_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """A generic NACK for ``lost`` (packed into PID/BLP pairs)."""
    items: list[tuple[int, int]] = []
    for seq in sorted(set(lost), key=lambda s: (s - lost[0]) & 0xFFFF):
        if items and 0 < (seq - items[-1][0]) & 0xFFFF <= 16:
            pid, blp = items[-1]
            items[-1] = (pid, blp | (1 << (((seq - pid) & 0xFFFF) - 1)))
        else:
            items.append((seq, 0))
    body = b"".join(struct.pack("!HH", pid, blp) for pid, blp in items)
    return _FB.pack(0x80 | FMT_NACK, RTPFB, 2 + len(items), sender_ssrc, media_ssrc) + body


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    exponent = 0
    mantissa = max(0, int(bitrate))
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exponent += 1
    fci = (
        b"REMB"
        + struct.pack(
            "!BBBB", len(ssrcs), (exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF
        )
        + b"".join(struct.pack("!I", s) for s in ssrcs)
    )
    return _FB.pack(0x80 | FMT_REMB, PSFB, 2 + len(fci) // 4, sender_ssrc, 0) + fci


def build_rr(reporter_ssrc: int, blocks: list[ReportBlock]) -> bytes:
    body = b"".join(
        _REPORT.pack(
            b.ssrc,
            (b.fraction_lost << 24) | (b.cumulative_lost & 0xFFFFFF),
            b.highest_seq,
            b.jitter,
            b.lsr,
            b.dlsr,
        )
        for b in blocks[:31]
    )
    count = min(len(blocks), 31)
    return _COMMON.pack(0x80 | count, RR, 1 + 6 * count) + struct.pack("!I", reporter_ssrc) + body


def build_sr(report: SenderReport) -> bytes:
    return _COMMON.pack(0x80, SR, 6) + _SR_INFO.pack(
        report.ssrc,
        report.ntp >> 32,
        report.ntp & 0xFFFFFFFF,
        report.rtp_timestamp & 0xFFFFFFFF,
        report.packet_count & 0xFFFFFFFF,
        report.octet_count & 0xFFFFFFFF,
    )


class ReceptionStats:
    """What a receiver report says about one incoming stream (RFC 3550 appendix A.3 and A.8)."""

    __slots__ = (
        "_expected_prior",
        "_received_prior",
        "_transit",
        "base_seq",
        "clock_rate",
        "cycles",
        "jitter",
        "last_sr",
        "last_sr_arrival",
        "max_seq",
        "received",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.jitter = 0.0
        self._transit: float | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self.last_sr = 0  # middle 32 bits of the last SR's NTP time
        self.last_sr_arrival: float | None = None

    def add(self, seq: int, timestamp: int, arrival: float) -> None:
        self.received += 1
        if self.base_seq is None:
            self.base_seq = seq
            self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < self.clock_rate * 10:
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    def sender_report(self, ntp: int, arrival: float) -> None:
        self.last_sr = (ntp >> 16) & 0xFFFFFFFF
        self.last_sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock:
        base = self.base_seq or 0
        extended_max = self.cycles + self.max_seq
        expected = extended_max - base + 1
        lost = max(0, expected - self.received)
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = (
            (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        )
        dlsr = int((now - self.last_sr_arrival) * 65536) if self.last_sr_arrival is not None else 0
        return ReportBlock(
            self.ssrc,
            min(fraction, 255),
            min(lost, 0x7FFFFF),
            extended_max & 0xFFFFFFFF,
            int(self.jitter),
            self.last_sr,
            dlsr,
        )
