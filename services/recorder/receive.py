"""The recorder's RTP receive path: what a recording needs of each packet, and nothing more.

aiortc's ``RTCRtpReceiver._handle_rtp_packet`` serves a participant that plays what it receives
and competes for its own downlink. Per video packet it runs a delay-based remote bitrate
estimator (``aiortc.rate``: inter-arrival groups, a Kalman-style overuse filter, AIMD rate
control) and sends a REMB whenever that estimate moves; per packet of any kind it stamps a
timezone-aware ``datetime`` for ``getSynchronizationSources`` and hands every complete frame to a
decoder thread through a locked queue. A recorder is a sink on the operator's network: it has
no downlink to discover, plays nothing, and decodes in its composer (:mod:`.composite`).

:class:`RecorderReceive` replaces that method on each receiver, and :class:`RecorderRoute` the
transport's RTP hand-over (aiortc still does ICE, DTLS and the SRTP session; a packet of an SSRC
its router knows is unprotected in the ICE connection's datagram callback, has only its fixed
header parsed, since the recorder reads no header extension, and goes straight to its track,
without aiortc's queue and receive task). aiortc's own pieces are reused where they do the job:

* the packet's arrival time and timestamp feed the track's :class:`~.sync.TrackClock`;
* receiver statistics per SSRC (aiortc's ``StreamStatistics``, read by the receiver's own RTCP
  task for its receiver reports, RFC 3550 section 6.4.2), at most :data:`MAX_SSRCS` per track;
* RTX (RFC 4588) unwrapped to the original packet;
* NACK (RFC 4585 section 6.2.1) for sequence gaps (:class:`MissingPackets`: the work per packet
  is bounded by :data:`NACK_HISTORY` whatever sequence numbers a sender forges);
* VP8 / Opus payloads depacketized (RFC 7741, RFC 7587) and reordered into whole frames by the
  receiver's own jitter buffer (bounded: 512 video packets, 16 audio ones);
* a PLI (RFC 4585 section 6.3.1) when the jitter buffer lost a picture or the composer wants a
  key frame (:meth:`want_key_frame`, at most every :data:`PLI_INTERVAL`);
* a REMB (draft-alvestrand-rmcat-remb-03) with a fixed bitrate (``recorder.max-receive-bitrate``)
  every :data:`REMB_INTERVAL` while video arrives, instead of a per-packet estimate: the bridge
  takes it as the recorder's downlink (``services/bridge/media/allocation/bandwidth.py``), lowered
  by the loss the receiver reports say, so the recorder is sent every layer its tiles ask for;
* each complete frame handed to the recording at once (no thread, no queue), its timestamp
  unwrapped.

It reads name-mangled attributes of aiortc 1.16's ``RTCRtpReceiver`` and ``RTCDtlsTransport``
and replaces aioice 0.13's ``Connection.data_received`` (both pinned exactly in
``pyproject.toml``), and fails loudly at construction if one is gone.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pylibsrtp
from aiortc import RTCDtlsTransport, RTCRtpReceiver
from aiortc.codecs import depayload, is_rtx
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, is_rtcp, pack_remb_fci, unwrap_rtx

from services.common.logging import RateLimitedLogger

from .sync import TrackClock, Unwrapper

log = logging.getLogger("recorder.media")
_limited = RateLimitedLogger(log)

FrameSink = Callable[[str, bytes, int], None]
"""codec name, whole encoded frame, unwrapped RTP timestamp of the frame"""

PLI_INTERVAL = 0.3
"""Seconds between two key frame requests the composer makes for one track."""
REMB_INTERVAL = 1.0
"""Seconds between two REMBs of one video track (WebRTC sends one about every second)."""
MAX_SSRCS = 8
"""SSRCs one track keeps statistics for (its media SSRC and RTX SSRC, a few changes of them);
packets of further SSRCs are dropped (a forged stream of new SSRCs would grow the table)."""

MAX_PENDING_RTCP = 16
"""RTCP packets (NACK, PLI, REMB) one track may have waiting to be sent."""

NACK_HISTORY = 128
"""Sequence numbers behind the highest received that may still be asked for again (aiortc's
``RTP_HISTORY_SIZE``; the bridge keeps more than that for retransmission)."""

_ATTRIBUTES = ("codecs", "remote_streams", "rtx_ssrc", "jitter_buffer", "nack_generator", "kind", "rtcp_ssrc")


class MissingPackets:
    """The sequence numbers missing from one stream, at most :data:`NACK_HISTORY` behind the
    highest received (RFC 3550 sequence arithmetic modulo 2^16). aiortc's ``NackGenerator``
    walks every number of a gap, up to 32767 for one forged packet; this one looks at the last
    NACK_HISTORY of it only."""

    __slots__ = ("highest", "missing")

    def __init__(self) -> None:
        self.highest: int | None = None
        self.missing: set[int] = set()

    def add(self, seq: int) -> bool:
        """A packet arrived; True when it revealed new missing packets."""
        highest = self.highest
        if highest is None:
            self.highest = seq
            return False
        ahead = (seq - highest) & 0xFFFF
        if ahead == 0:
            return False
        if ahead >= 0x8000:  # older than the highest: a late or retransmitted packet
            self.missing.discard(seq)
            return False
        self.highest = seq
        missing = self.missing
        if missing:  # forget what is too old to ask for
            self.missing = missing = {m for m in missing if (seq - m) & 0xFFFF <= NACK_HISTORY}
        if ahead == 1:
            return False
        missing.update((seq - back) & 0xFFFF for back in range(1, min(ahead, NACK_HISTORY + 1)))
        return True


class RecorderReceive:
    """Stands in for one ``RTCRtpReceiver._handle_rtp_packet`` (see the module docstring)."""

    def __init__(
        self, receiver: RTCRtpReceiver, clock: TrackClock, on_frame: FrameSink, remb_bps: int
    ) -> None:
        found: dict[str, Any] = {}
        for name in _ATTRIBUTES:
            mangled = f"_RTCRtpReceiver__{name}"
            if not hasattr(receiver, mangled):
                raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no {mangled}")
            found[name] = getattr(receiver, mangled)
        self.receiver = receiver
        self.codecs = found["codecs"]
        self.streams: dict[int, StreamStatistics] = found["remote_streams"]
        self.rtx_ssrc: dict[int, int] = found["rtx_ssrc"]
        self.jitter_buffer = found["jitter_buffer"]
        self.nack = MissingPackets() if found["nack_generator"] is not None else None  # video only
        self.video = found["kind"] == "video"
        self.clock = clock
        self.on_frame = on_frame
        self.remb_bps = remb_bps
        self._unwrap_packet = Unwrapper()
        self._unwrap_frame = Unwrapper()
        self._pli_wanted = False
        self._last_pli_request = -PLI_INTERVAL
        self._next_remb = 0.0
        self.packets = 0
        self.frames = 0
        self.rembs_sent = 0
        self._pending: set[asyncio.Future[None]] = set()

    def install(self) -> None:
        """Take over the receiver's packet handling (before it starts: from the ``track`` event)."""
        self.receiver._handle_rtp_packet = self.handle  # type: ignore[method-assign]

    def want_key_frame(self) -> None:
        """Ask the sender for a key frame with the next packet (at most every PLI_INTERVAL)."""
        now = time.monotonic()
        if now - self._last_pli_request >= PLI_INTERVAL:
            self._last_pli_request = now
            self._pli_wanted = True

    async def handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """One RTP packet aiortc's transport routed to this receiver (event loop)."""
        self.receive(packet, arrival_time_ms)

    def _later(self, send: Coroutine[Any, Any, None]) -> None:
        """Sends an RTCP packet from its own task: :meth:`receive` runs inside a datagram
        callback (:class:`RecorderRoute`) and cannot wait. At most :data:`MAX_PENDING_RTCP`
        are pending at once (a forged gap per packet would otherwise start a task per packet)."""
        if len(self._pending) >= MAX_PENDING_RTCP:
            send.close()
            _limited.warning(("rtcp", id(self)), "too many RTCP packets pending for a track; dropped")
            return
        task = asyncio.ensure_future(send)
        self._pending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Future[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _limited.warning(("rtcp-send", id(self)), "RTCP send failed: %r", task.exception())

    def receive(self, packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        """One RTP packet of this track (event loop, synchronous). ``arrival_time_ms`` (aiortc's
        NTP-based stamp) is not read: the track's clock takes :func:`time.monotonic`."""
        receiver = self.receiver
        if not receiver._enabled:
            return
        codec = self.codecs.get(packet.payload_type)
        if codec is None:
            return
        stats = self.streams.get(packet.ssrc)
        if stats is None:
            if len(self.streams) >= MAX_SSRCS:
                _limited.warning(("ssrcs", id(self)), "a track's packets come from too many SSRCs; dropped")
                return
            stats = self.streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        self.packets += 1
        now = time.monotonic()
        if is_rtx(codec):
            original_ssrc = self.rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if (
                original_ssrc is None
                or len(packet.payload) < 2
                or not isinstance(apt, int)
                or apt not in self.codecs
            ):
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self.codecs[apt]
        else:  # a retransmission arrives late: it says nothing about the transit time
            self.clock.observe(now, self._unwrap_packet(packet.timestamp))

        if self.nack is not None and self.nack.add(packet.sequence_number):
            self._later(receiver._send_rtcp_nack(packet.ssrc, sorted(self.nack.missing)))
        try:
            packet._data = depayload(codec, packet.payload) if packet.payload else b""  # type: ignore[attr-defined]
        except ValueError:
            return
        pli, frame = self.jitter_buffer.add(packet)
        if self.video:
            if self._pli_wanted:
                self._pli_wanted = False
                pli = True
            if pli:
                self._later(receiver._send_rtcp_pli(packet.ssrc))
            if now >= self._next_remb:
                self._next_remb = now + REMB_INTERVAL
                self._later(self._send_remb(packet.ssrc))
        if frame is not None:
            self.frames += 1
            try:
                self.on_frame(codec.name, frame.data, self._unwrap_frame(frame.timestamp))
            except Exception as exc:  # one bad frame must not stop the receiver
                _limited.warning(("frame", type(exc)), "frame handler failed: %r", exc)

    async def _send_remb(self, media_ssrc: int) -> None:
        rtcp_ssrc = self.receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if rtcp_ssrc is None:
            return
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(self.remb_bps, [media_ssrc])
        )
        self.rembs_sent += 1
        await self.receiver._send_rtcp(packet)


_FIXED_HEADER = struct.Struct("!BBHII")


def parse_rtp(data: bytes) -> RtpPacket | None:
    """An RTP packet's fixed header, payload and padding (RFC 3550 section 5.1); the CSRC list
    and the header extension (RFC 8285) are skipped: the recorder reads neither. None when
    malformed (what ``RtpPacket.parse`` refuses)."""
    if len(data) < 12:
        return None
    first, second, seq, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
    if first >> 6 != 2:
        return None
    pos = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < pos + 4:
            return None
        pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
    end = len(data)
    if pos > end:
        return None
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > end - pos:
            return None
        end -= padding
    packet = RtpPacket(second & 0x7F, second >> 7, seq, timestamp, ssrc, data[pos:end])
    packet.padding_size = padding
    return packet


class RecorderRoute:
    """Stands in for the way an SRTP datagram takes through aiortc 1.16 / aioice 0.13 to a
    recorder's track. aiortc queues every datagram in the ICE connection (``data_received``),
    wakes the DTLS transport's receive task for it (``_recv_next``), unprotects it and parses it
    in full (header extensions, RFC 8285) before routing it. Once the DTLS handshake is done
    and the SRTP session is up (RFC 5764), a datagram arriving on the ICE connection that is
    SRTP (RFC 7983 section 7: first byte 128-191), not SRTCP (RFC 5761 section 4: packet type
    192-208), and whose SSRC the transport's router already knows for one of the recorder's
    tracks, is unprotected and handed to that track's :class:`RecorderReceive` in the datagram
    callback itself, with only its fixed header parsed (:func:`parse_rtp`). Everything else
    (STUN, DTLS, SRTCP, packets of SSRCs not known yet, which aiortc's routing learns) takes
    aiortc's own way. Fails loudly at construction if an internal it relies on is gone."""

    def __init__(self, transport: RTCDtlsTransport) -> None:
        router = getattr(transport, "_rtp_router", None)
        connection = getattr(getattr(transport, "transport", None), "_connection", None)
        if (
            router is None
            or not hasattr(router, "ssrc_table")
            or not hasattr(transport, "_handle_rtp_data")
            or not hasattr(transport, "_rx_srtp")
            or not hasattr(transport, "_state")
            or not hasattr(transport, "_RTCDtlsTransport__rx_packets")
            or not hasattr(transport, "_RTCDtlsTransport__rx_bytes")
            or connection is None
            or not hasattr(connection, "data_received")
        ):
            raise RuntimeError(
                "aiortc changed: RTCDtlsTransport has no _rtp_router.ssrc_table, _handle_rtp_data, "
                "_rx_srtp, _state or rx counters, or its ICE transport no _connection.data_received"
            )
        self.transport = transport
        self.ssrc_table: dict[int, object] = router.ssrc_table
        self.original = transport._handle_rtp_data
        self.original_datagram: Callable[[bytes, int], None] = connection.data_received
        self.tracks: dict[object, RecorderReceive] = {}
        self.fast = 0
        self.direct = 0
        self.unprotect_failed = 0

    @classmethod
    def of(cls, transport: RTCDtlsTransport) -> RecorderRoute:
        """The transport's route, installed on first use."""
        route = getattr(transport, "_recorder_route", None)
        if route is None:
            route = cls(transport)
            transport._recorder_route = route  # type: ignore[attr-defined]
            transport._handle_rtp_data = route.handle  # type: ignore[method-assign]
            transport.transport._connection.data_received = route.datagram  # type: ignore[method-assign]
        return route  # type: ignore[no-any-return]

    def add(self, track: RecorderReceive) -> None:
        self.tracks[track.receiver] = track

    def datagram(self, data: bytes, component: int) -> None:
        """One datagram from the ICE connection (aioice's ``data_received``; event loop)."""
        transport = self.transport
        if (
            len(data) >= 12
            and 127 < data[0] < 192
            and transport._state is State.CONNECTED
            and transport._rx_srtp is not None
            and not is_rtcp(data)
        ):
            track = self.tracks.get(self.ssrc_table.get(int.from_bytes(data[8:12], "big")))
            if track is not None:
                try:
                    plain = transport._rx_srtp.unprotect(data)
                except pylibsrtp.Error:  # forged, replayed or damaged: what aiortc drops too
                    self.unprotect_failed += 1
                    return
                transport._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
                transport._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
                packet = parse_rtp(plain)
                if packet is not None:
                    self.direct += 1
                    track.receive(packet)  # (no datetime per packet for aiortc's unread stamp)
                return
        self.original_datagram(data, component)

    async def handle(self, data: bytes, arrival_time_ms: int) -> None:
        """Stands in for the DTLS transport's ``_handle_rtp_data`` (unprotected RTP that took
        aiortc's way)."""
        track = (
            self.tracks.get(self.ssrc_table.get(int.from_bytes(data[8:12], "big")))
            if len(data) >= 12
            else None
        )
        if track is None:
            await self.original(data, arrival_time_ms=arrival_time_ms)
            return
        packet = parse_rtp(data)
        if packet is not None:
            self.fast += 1
            track.receive(packet, arrival_time_ms)
