"""The SFU core of one conference: streams, subscriptions, RTP fan-out and RTCP termination.

No sockets here. Each endpoint has a ``transmit(datagram)`` callable (the engine binds it to the
UDP socket and the endpoint's address) and, once DTLS is done, an SRTP context. The engine feeds
decrypted RTP/RTCP in with :meth:`ConferenceForwarder.handle_rtp` / :meth:`handle_rtcp`. The engine
may also give the forwarder a :class:`~.native.NativeFanout`: the same per-receiver loop in C,
sending on the engine's socket; this module keeps the state it reads in step.

Per incoming RTP packet: read the header with ``struct``, cache it for NACKs, ask the policy who
gets it, rewrite the header only for subscriptions that remap it, note per subscription which
packet went out under which sequence number, protect once per receiver, transmit. RTX (RFC 4588)
answers NACKs when the sender negotiated it.

NACKs are answered only with packets the receiver was actually forwarded (so never a stream,
layer or stretch the policy kept from it), and under storm protection: a packet is not resent
to the same receiver again within about a round trip, nor when it is older than is useful, and
each receiver has a retransmission budget (a token bucket, a share of its media rate).
"""

from __future__ import annotations

import logging
import secrets
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import rtcp, rtp
from .aiortc_adapter import SrtpContext, SrtpError
from .model import MediaSources
from .native import subscription_struct, update_mapping
from .policy import ForwardingPolicy
from .rid import RidBinder

if TYPE_CHECKING:
    from .native import NativeFanout, NativeReceiver

log = logging.getLogger("parley.bridge.media")

_HEADER = struct.Struct("!BBHII")
KEYFRAME_REQUEST_INTERVAL = 0.3  # seconds between PLIs the bridge sends for one stream
UPSTREAM_NACK_RETRY = 0.1  # seconds before the bridge asks a sender again for the same packet
UPSTREAM_NACK_MAX_GAP = 64  # a larger jump is a restart or a pause, not loss
RTT_SMOOTHING = 0.2  # weight of a new round-trip sample
NEVER_RESENT = -1e9


@dataclass(frozen=True)
class RetransmissionLimits:
    """How the bridge answers NACKs without feeding a retransmission storm.

    A receiver that lost packets because it is starved (its socket buffer overflowed) loses
    more when it gets a burst of retransmissions, and NACKs again; receivers also repeat every
    packet still missing in each NACK (aiortc does on every new gap). So a packet is resent to
    the same receiver at most once per ``min_interval`` or ``rtt_factor`` round trips (never
    waiting more than ``max_interval``: a starved receiver's reports make its round trip seconds
    long, and a lost retransmission must still be repaired soon), and only
    while younger than ``max_age`` (or ``max_age_rtts`` round trips); each NACK gets at most
    ``max_per_nack`` packets; and each receiver's retransmissions fit a token bucket filled at
    ``budget_share`` of the rate it is sent media at (at least ``budget_min_bps``) holding
    ``budget_burst`` seconds of it.

    ``max_age`` is much longer than libwebrtc's 1 s: receivers that repeat a NACK only when a
    new gap appears (aiortc) ask again seconds after a lost retransmission, and one whose
    jitter buffer never gives up on a packet (aiortc's waits 512 packets) shows a frozen video
    until it gets it. Measured with ``bench/nack_storm.py``: with 3 s, two of twelve forwarded
    streams froze for good under 10 % loss; libwebrtc receivers stop asking for old packets
    themselves. Suppression and the budget bound the cost of answering late NACKs.
    """

    min_interval: float = 0.1
    max_interval: float = 0.6
    rtt_factor: float = 1.0
    max_age: float = 10.0
    max_age_rtts: float = 3.0
    max_per_nack: int = 32
    budget_share: float = 0.5
    budget_min_bps: float = 200_000
    budget_burst: float = 0.25


Transmit = Callable[[bytes], None]


class PacketCache:
    """The last ``size`` packets of a stream by sequence number (a ring; memory is fixed)."""

    __slots__ = ("_mask", "_packets", "_seqs", "_times")

    def __init__(self, size: int) -> None:
        size = 1 << max(4, (size - 1).bit_length())
        self._mask = size - 1
        self._seqs = [-1] * size
        self._packets: list[bytes | None] = [None] * size
        self._times = [0.0] * size

    def put(self, seq: int, packet: bytes, now: float = 0.0) -> None:
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._packets[slot] = packet
        self._times[slot] = now

    def get(self, seq: int) -> bytes | None:
        slot = seq & self._mask
        return self._packets[slot] if self._seqs[slot] == seq else None

    def arrival(self, seq: int) -> float | None:
        """When the cached packet ``seq`` arrived (the ``now`` given to :meth:`put`)."""
        slot = seq & self._mask
        return self._times[slot] if self._seqs[slot] == seq else None

    def __len__(self) -> int:
        return len(self._seqs)


class SentLog:
    """Which packet of its stream a subscription sent under each outgoing sequence number (the
    last ``size``), and when each was last resent. Recording is one list store per forwarded
    packet; a NACK for an outgoing sequence number maps back to exactly what was forwarded, or
    to nothing when the receiver never got that packet (the policy held it back)."""

    __slots__ = ("_mask", "entries", "resent_at")

    def __init__(self, size: int) -> None:
        size = 1 << max(4, (size - 1).bit_length())
        self._mask = size - 1
        # flat arrays rather than lists: the C forwarding loop (native.py) records into them too
        self.entries = array("q", [-1]) * size  # (out_seq << 16) | original seq, -1: empty
        self.resent_at = array("d", [NEVER_RESENT]) * size  # when each slot's packet was last resent

    def record(self, out_seq: int, seq: int) -> None:
        slot = out_seq & self._mask
        self.entries[slot] = (out_seq << 16) | seq
        self.resent_at[slot] = NEVER_RESENT

    def original(self, out_seq: int) -> int | None:
        """The stream's sequence number of what went out as ``out_seq``, or ``None``."""
        entry = self.entries[out_seq & self._mask]
        return entry & 0xFFFF if entry >= 0 and entry >> 16 == out_seq else None

    def last_resent(self, out_seq: int) -> float:
        return self.resent_at[out_seq & self._mask]

    def mark_resent(self, out_seq: int, now: float) -> None:
        self.resent_at[out_seq & self._mask] = now


class RetransmissionBudget:
    """A token bucket in bytes for one receiver's retransmissions: it fills at ``share`` of the
    rate the receiver is sent media at (measured from the byte count given to :meth:`take`),
    at least ``min_bps``, and holds ``burst`` seconds of that rate."""

    __slots__ = ("_bytes", "_last", "_rate_bps", "_tokens", "burst", "min_bps", "share")

    def __init__(self, share: float = 0.5, min_bps: float = 200_000, burst: float = 0.25) -> None:
        self.share, self.min_bps, self.burst = share, min_bps, burst
        self._last: float | None = None
        self._bytes = 0
        self._rate_bps = 0.0
        self._tokens = self._capacity()

    @property
    def rate_bps(self) -> float:
        """What the bucket fills at now."""
        return max(self.min_bps, self.share * self._rate_bps)

    def _capacity(self) -> float:
        return self.rate_bps / 8 * self.burst

    def take(self, size: int, now: float, media_bytes: int) -> bool:
        """Spend ``size`` bytes if the bucket holds them. ``media_bytes``: total bytes the
        receiver was sent so far (its media rate is measured from it)."""
        if self._last is None:
            self._last, self._bytes = now, media_bytes
        elapsed = now - self._last
        if elapsed > 0:
            sample = (media_bytes - self._bytes) * 8 / elapsed
            weight = min(1.0, elapsed)  # about a one-second average
            self._rate_bps += weight * (sample - self._rate_bps)
            self._tokens = min(self._capacity(), self._tokens + self.rate_bps / 8 * elapsed)
            self._last, self._bytes = now, media_bytes
        if self._tokens < size:
            return False
        self._tokens -= size
        return True


class IncomingStream:
    """One SSRC an endpoint sends (a media stream, or the RTX stream paired with one)."""

    __slots__ = (
        "audio_level_ext",
        "cache",
        "clock_rate",
        "highest_seq",
        "kind",
        "last_keyframe_request",
        "last_sr",
        "media",
        "muted",
        "nack_requests",
        "reception",
        "rtx",
        "rtx_payload_types",
        "sender",
        "ssrc",
        "subscriptions",
    )

    def __init__(self, sender: EndpointMedia, ssrc: int, kind: str, clock_rate: int, cache_size: int) -> None:
        self.sender = sender
        self.ssrc = ssrc
        self.kind = kind
        self.clock_rate = clock_rate
        self.cache = PacketCache(cache_size)
        self.reception = rtcp.ReceptionStats(ssrc, clock_rate)
        self.subscriptions: list[Subscription] = []  # replaced, never changed in place
        self.rtx: IncomingStream | None = None  # on a media stream: its RTX stream
        self.media: IncomingStream | None = None  # on an RTX stream: the media stream it repairs
        self.rtx_payload_types: dict[int, int] = {}  # media pt -> rtx pt
        self.audio_level_ext: int | None = None
        self.last_sr: rtcp.SenderReport | None = None
        self.last_keyframe_request = -1e9
        self.highest_seq: int | None = None
        self.nack_requests: dict[int, float] = {}  # seq -> when the bridge last asked the sender
        self.muted = False  # force-muted by the focus: dropped on arrival

    @property
    def endpoint_id(self) -> str:
        return self.sender.id


class Subscription:
    """One receiver's view of one incoming stream: the SSRC, sequence and timestamp offsets it
    sees (identity unless a policy remaps them), what was sent, and its feedback."""

    __slots__ = (
        "fraction_lost",
        "native",
        "octets_by_python",
        "out_ssrc",
        "packets_by_python",
        "payload_rewrite",
        "receiver",
        "remb_bps",
        "reports_sent",
        "rewrite",
        "sent",
        "seq_delta",
        "stream",
        "ts_delta",
    )

    def __init__(self, stream: IncomingStream, receiver: EndpointMedia, log_size: int = 512) -> None:
        self.stream = stream
        self.sent = SentLog(log_size)
        # the C loop's copy of the mapping and its counters (native.py), when the forwarder has one
        self.native: Any = None
        if receiver.native is not None:
            self.native = subscription_struct(receiver.native, self.sent)
        # middle 32 bits of the NTP time of the sender reports relayed to the receiver -> when
        self.reports_sent: dict[int, float] = {}
        self.receiver = receiver
        self.out_ssrc = stream.ssrc
        self.seq_delta = 0
        self.ts_delta = 0
        self.rewrite = False
        self.packets_by_python = 0
        self.octets_by_python = 0  # RTP payload bytes
        self.remb_bps: int | None = None
        self.fraction_lost = 0
        # rewrites the payload of the header-rewritten copy in place (VP8 picture ids), or None
        self.payload_rewrite: Callable[[bytearray], None] | None = None

    def remap(
        self,
        out_ssrc: int,
        seq_delta: int,
        ts_delta: int,
        payload_rewrite: Callable[[bytearray], None] | None = None,
    ) -> None:
        """Change what the receiver sees (for simulcast layer switches and pauses)."""
        self.out_ssrc, self.seq_delta, self.ts_delta = out_ssrc, seq_delta, ts_delta
        self.payload_rewrite = payload_rewrite
        self.rewrite = (
            out_ssrc != self.stream.ssrc or seq_delta != 0 or ts_delta != 0 or payload_rewrite is not None
        )
        self.receiver.subscriptions_by_out_ssrc[out_ssrc] = self
        if self.native is not None:
            update_mapping(
                self.native, out_ssrc, seq_delta, ts_delta, self.rewrite, payload_rewrite is not None
            )

    @property
    def packets(self) -> int:
        """RTP packets forwarded (by either loop)."""
        native = self.native
        return self.packets_by_python + (0 if native is None else int(native.packets))

    @property
    def octets(self) -> int:
        """RTP payload bytes forwarded (by either loop)."""
        native = self.native
        return self.octets_by_python + (0 if native is None else int(native.octets))

    def rewritten(self, packet: bytes, seq: int, ts: int) -> bytes | bytearray:
        """``packet`` (sequence number ``seq``, timestamp ``ts``) as this receiver sees it."""
        if not self.rewrite:
            return packet
        out = bytearray(packet)
        rtp.rewrite_in_place(out, seq + self.seq_delta, ts + self.ts_delta, self.out_ssrc)
        if self.payload_rewrite is not None:
            self.payload_rewrite(out)
        return out


class EndpointMedia:
    """The media state of one endpoint inside its conference."""

    def __init__(
        self,
        endpoint_id: str,
        transmit: Transmit,
        limits: RetransmissionLimits | None = None,
        native: NativeReceiver | None = None,
    ) -> None:
        limits = limits or RetransmissionLimits()
        self.id = endpoint_id
        self.transmit = transmit
        self.native = native
        """Where the C forwarding loop sends to it (native.py), kept in step with transmit and srtp."""
        self._srtp: SrtpContext | None = None
        self.rtcp_ssrc = secrets.randbits(32) or 1
        self.sources = MediaSources()
        self.rid_binder: RidBinder | None = None
        """Learns RID simulcast layers from the RTP stream id header extensions (rid.py), when
        the endpoint negotiated them."""
        self.streams: dict[int, IncomingStream] = {}
        self.subscriptions_by_out_ssrc: dict[int, Subscription] = {}
        self.subscriptions: dict[int, Subscription] = {}  # by incoming stream ssrc
        self.rtx_seqs: dict[int, int] = {}  # next RTX sequence number per RTX SSRC sent to it
        self.packets_received = 0
        self.bytes_received = 0
        self.muted_packets = 0  # packets of a force-muted kind, dropped
        # what the bridge sent besides the fan-out (RTCP, retransmissions); the fan-out itself is
        # counted once per subscription to keep the hot loop short (see packets_sent)
        self.other_packets_sent = 0
        self.other_bytes_sent = 0
        self.nacks_received = 0
        self.nacks_sent = 0  # NACKs the bridge sent this endpoint for packets it lost on its uplink
        self.retransmissions = 0
        # retransmission requests (per packet) not answered: resent to it within the interval,
        # older than is useful, over its budget or the per-NACK cap, never forwarded to it
        self.retransmissions_suppressed = 0
        self.retransmissions_too_old = 0
        self.retransmissions_dropped = 0
        self.retransmissions_not_forwarded = 0
        self.retransmission_budget = RetransmissionBudget(
            limits.budget_share, limits.budget_min_bps, limits.budget_burst
        )
        self.rtt: float | None = None  # seconds, from its receiver reports on relayed SRs
        # its feedback on the video it is sent, whichever streams it names: the latest REMB,
        # and the highest fraction lost (0..255) of its latest receiver report's video blocks
        self.remb_bps: int | None = None
        self.video_fraction_lost = 0
        self.video_loss_reports = 0
        """Receiver reports with video blocks so far (a change says the loss is fresh)."""
        self.plis_forwarded = 0
        self.unknown_ssrc_packets = 0
        self.srtp_errors = 0
        self.last_upstream_nack = -1e9

    @property
    def srtp(self) -> SrtpContext | None:
        return self._srtp

    @srtp.setter
    def srtp(self, srtp: SrtpContext | None) -> None:
        if self.native is not None:
            self.native.set_srtp(srtp)
        self._srtp = srtp

    def set_transmit(
        self, transmit: Transmit, address: tuple[Any, ...] | None = None, fd: int | None = None
    ) -> None:
        """Send to it with ``transmit``, which sends to ``address`` from socket ``fd`` (for the C
        loop; ``None``: the socket it was created with)."""
        self.transmit = transmit
        if self.native is not None:
            self.native.set_address(address, fd)

    @property
    def connected(self) -> bool:
        return self._srtp is not None

    @property
    def packets_sent(self) -> int:
        return self.other_packets_sent + sum(sub.packets for sub in self.subscriptions.values())

    @property
    def bytes_sent(self) -> int:
        """SRTP bytes sent (fan-out counted as payload + RTP header + 16-byte auth tag)."""
        fanout = sum(sub.octets + 28 * sub.packets for sub in self.subscriptions.values())
        return self.other_bytes_sent + fanout

    def send_rtp(self, packet: bytes) -> None:
        srtp = self.srtp
        if srtp is None:
            return
        data = srtp.protect(packet)
        self.other_packets_sent += 1
        self.other_bytes_sent += len(data)
        self.transmit(data)

    def send_rtcp(self, packet: bytes) -> None:
        srtp = self.srtp
        if srtp is None:
            return
        data = srtp.protect_rtcp(packet)
        self.other_packets_sent += 1
        self.other_bytes_sent += len(data)
        self.transmit(data)


class ConferenceForwarder:
    """Every endpoint and stream of one conference."""

    def __init__(
        self,
        conference_id: str,
        policy: ForwardingPolicy,
        *,
        cache_size: int = 512,
        remb_min_bps: int = 100_000,
        remb_max_bps: int = 2_500_000,
        retransmission: RetransmissionLimits | None = None,
        native: NativeFanout | None = None,
    ) -> None:
        self.id = conference_id
        self.native = native
        """The per-receiver loop in C, or None: Python does it (see handle_rtp)."""
        self.retransmission = retransmission or RetransmissionLimits()
        self.policy = policy
        self.endpoints: dict[str, EndpointMedia] = {}
        self.cache_size = cache_size
        self.remb_min_bps = remb_min_bps
        self.remb_max_bps = remb_max_bps
        self.packets_forwarded = 0
        self.redundant_rtx_dropped = 0
        """Sender RTX packets carrying a packet the bridge already had (not relayed, not counted)."""
        policy.request_keyframe = self.request_keyframe

    # ---- membership ------------------------------------------------------------------------

    def add_endpoint(self, endpoint_id: str, transmit: Transmit) -> EndpointMedia:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            native = self.native.receiver() if self.native is not None else None
            endpoint = EndpointMedia(endpoint_id, transmit, self.retransmission, native)
            self.endpoints[endpoint_id] = endpoint
            self.policy.on_endpoint_added(endpoint_id)
        return endpoint

    def remove_endpoint(self, endpoint_id: str) -> None:
        endpoint = self.endpoints.pop(endpoint_id, None)
        if endpoint is None:
            return
        endpoint.srtp = None
        endpoint.streams.clear()
        endpoint.subscriptions.clear()
        endpoint.subscriptions_by_out_ssrc.clear()
        self.policy.on_endpoint_removed(endpoint_id)
        self._rebuild()

    def set_sources(
        self, endpoint_id: str, sources: MediaSources, now: float = 0.0, *, learnt: bool = False
    ) -> None:
        """What the endpoint sends, as signalled (or, ``learnt``, as corrected from the RIDs its
        packets carry)."""
        endpoint = self.endpoints[endpoint_id]
        endpoint.sources = sources
        if not learnt:
            binder = RidBinder(sources)
            endpoint.rid_binder = binder if binder.active else None
        clock = {"audio": 48000, "video": 90000}
        for pt in sources.payload_types:
            if pt.name.lower() not in ("rtx", "red", "ulpfec", "telephone-event", "cn"):
                kind = "audio" if pt.name.lower() in ("opus", "pcmu", "pcma", "g722", "isac") else "video"
                clock[kind] = pt.clockrate
        wanted: dict[int, str] = {s: "audio" for s in sources.audio_ssrcs}
        wanted.update({s: "video" for s in sources.video_ssrcs})
        streams: dict[int, IncomingStream] = {}
        for ssrc, kind in wanted.items():
            stream = endpoint.streams.get(ssrc)
            if stream is None or stream.kind != kind:
                stream = IncomingStream(endpoint, ssrc, kind, clock[kind], self.cache_size)
            stream.rtx = stream.media = None
            streams[ssrc] = stream
        rtx_pts = {media_pt: rtx_pt for rtx_pt, media_pt in sources.rtx_payload_types().items()}
        level_ext = sources.header_extension_id(rtp.AUDIO_LEVEL_URI)
        for media_ssrc, rtx_ssrc in sources.rtx_pairs().items():
            media = streams.get(media_ssrc)
            rtx_stream = streams.get(rtx_ssrc)
            if media is None or rtx_stream is None or not rtx_pts:
                continue
            media.rtx = rtx_stream
            media.rtx_payload_types = rtx_pts
            rtx_stream.media = media
        for stream in streams.values():
            stream.audio_level_ext = level_ext if stream.kind == "audio" else None
            stream.muted = stream.kind in sources.muted
        endpoint.streams = streams
        self._rebuild()

    def set_srtp(self, endpoint_id: str, srtp: SrtpContext | None, now: float) -> None:
        """DTLS finished (or the transport went away): start or stop sending to the endpoint.
        A new receiver gets a keyframe from every video sender."""
        endpoint = self.endpoints[endpoint_id]
        endpoint.srtp = srtp
        self._rebuild()
        if srtp is not None:
            for other in self.endpoints.values():
                if other is not endpoint:
                    for stream in other.streams.values():
                        if stream.kind == "video" and stream.media is None:
                            self.request_keyframe(stream, now)

    def _rebuild(self) -> None:
        """Recompute each stream's subscription list (connected receivers other than its sender)."""
        receivers = [e for e in self.endpoints.values() if e.connected]
        for sender in self.endpoints.values():
            for stream in sender.streams.values():
                if stream.media is not None:  # RTX streams ride on their media stream
                    continue
                subs = []
                for receiver in receivers:
                    if receiver is sender:
                        continue
                    sub = receiver.subscriptions.get(stream.ssrc)
                    if sub is None or sub.stream is not stream:
                        sub = Subscription(stream, receiver, self.cache_size)
                        receiver.subscriptions[stream.ssrc] = sub
                        receiver.subscriptions_by_out_ssrc[sub.out_ssrc] = sub
                    subs.append(sub)
                stream.subscriptions = subs
        live = {(s.sender.id, s.ssrc) for e in self.endpoints.values() for s in e.streams.values()}
        for receiver in self.endpoints.values():
            for ssrc, sub in list(receiver.subscriptions.items()):
                if (
                    (sub.stream.sender.id, sub.stream.ssrc) not in live
                    or self.endpoints.get(sub.stream.sender.id) is not sub.stream.sender
                    or sub.stream.sender.streams.get(sub.stream.ssrc) is not sub.stream
                ):
                    del receiver.subscriptions[ssrc]
                    receiver.other_packets_sent += sub.packets
                    receiver.other_bytes_sent += sub.octets + 28 * sub.packets
                    if receiver.subscriptions_by_out_ssrc.get(sub.out_ssrc) is sub:
                        del receiver.subscriptions_by_out_ssrc[sub.out_ssrc]

    # ---- RTP -------------------------------------------------------------------------------

    def handle_rtp(self, sender: EndpointMedia, packet: bytes, now: float) -> None:
        """A decrypted RTP packet from ``sender``: cache it and fan it out."""
        if len(packet) < 12:
            return
        _, _, seq, ts, ssrc = _HEADER.unpack_from(packet)
        stream = sender.streams.get(ssrc)
        binder = sender.rid_binder
        if binder is not None and binder.wants(ssrc) and (stream is None or stream.kind == "video"):
            corrected = binder.observe(ssrc, packet)
            if corrected is not None:  # RID-tagged layers signalled out of order, or not at all
                self.set_sources(sender.id, corrected, now, learnt=True)
                stream = sender.streams.get(ssrc)
        if stream is None:
            sender.unknown_ssrc_packets += 1
            return
        if stream.muted:  # force-muted (its RTX too): reaches no one, counts for no speaker
            sender.muted_packets += 1
            return
        media = stream.media
        if media is not None:
            self._handle_rtx(media, packet, now)
            return
        stream.reception.add(seq, ts, now)
        stream.cache.put(seq, packet, now)
        highest = stream.highest_seq
        if highest is None:
            stream.highest_seq = seq
        else:
            gap = (seq - highest) & 0xFFFF
            if gap < 0x8000:
                stream.highest_seq = seq
                if 1 < gap <= UPSTREAM_NACK_MAX_GAP and stream.kind == "video":
                    # lost on the sender's uplink: ask now rather than when every receiver notices
                    self._request_upstream(stream, [(highest + i) & 0xFFFF for i in range(1, gap)], now)
        if stream.audio_level_ext is not None:
            level = rtp.audio_level(packet, stream.audio_level_ext)
            if level is not None:
                self.policy.observe_audio_level(stream, level[0], level[1], now)
        subscriptions = self.policy.select(stream, packet, stream.subscriptions)
        self.packets_forwarded += len(subscriptions)
        if self.native is not None and subscriptions:
            # the same loop in C; it leaves payload rewrites and a full socket buffer to this one
            subscriptions = self.native.forward(packet, subscriptions)
        octets = len(packet) - 12
        # protect for every receiver, then send them all: the interpreter and SRTP on one side and
        # the kernel's send path on the other do not evict each other's caches once per receiver
        # (~6 % less CPU at 1 -> 5 in bench.bridge_forwarding)
        outgoing = []
        for sub in subscriptions:
            receiver = sub.receiver
            srtp = receiver.srtp
            if srtp is None:
                continue
            try:
                data = srtp.protect(sub.rewritten(packet, seq, ts) if sub.rewrite else packet)
            except SrtpError:
                continue
            sub.sent.record((seq + sub.seq_delta) & 0xFFFF, seq)
            sub.packets_by_python += 1
            sub.octets_by_python += octets
            outgoing.append((receiver.transmit, data))
        for transmit, data in outgoing:
            transmit(data)

    def _handle_rtx(self, media: IncomingStream, packet: bytes, now: float) -> None:
        """A retransmission the sender made (after our NACK): restore it into the media stream's
        cache and pass it on to the subscribers as their RTX.

        A packet the cache already holds is dropped: the receivers were sent the original, and
        one that lost it asks the bridge, which answers from the cache. Chrome sends such
        redundant RTX as bandwidth-probe padding (old payloads again); relaying it would cost
        every receiver that much bandwidth, and the policy would meter it as the layer's bitrate.
        """
        pt = packet[1] & 0x7F
        media_pt = next((m for m, r in media.rtx_payload_types.items() if r == pt), None)
        if media_pt is None:
            return
        try:
            original = rtp.unwrap_rtx(packet, media_pt, media.ssrc)
        except rtp.RtpError:
            return
        seq = _HEADER.unpack_from(original)[2]
        if media.cache.get(seq) is not None:
            self.redundant_rtx_dropped += 1
            return
        media.cache.put(seq, original, now)
        for sub in self.policy.select(media, original, media.subscriptions):
            out_seq = (seq + sub.seq_delta) & 0xFFFF
            sub.sent.record(out_seq, seq)
            sub.sent.mark_resent(out_seq, now)
            self._retransmit(sub, original)

    def _retransmit(self, sub: Subscription, original: bytes, out_seq: int | None = None) -> None:
        """Send a cached packet again to one subscriber (as ``out_seq``, by default under its
        current sequence mapping), as RTX when the stream has RTX.

        The RTX SSRC is the one paired (``FID``) with the SSRC the receiver sees, which differs
        from the stream's own when a policy remaps it (a simulcast layer shown as another); the
        receiver's RTX sequence numbers are kept per RTX SSRC so layer switches do not reuse them.
        """
        stream = sub.stream
        _, b1, seq, ts, _ = _HEADER.unpack_from(original)
        if out_seq is None:
            out_seq = (seq + sub.seq_delta) & 0xFFFF
        if out_seq == (seq + sub.seq_delta) & 0xFFFF:
            # forwarded under the current mapping: header and payload (VP8 picture ids) as sent
            base: bytes | bytearray = sub.rewritten(original, seq, ts)
        elif sub.payload_rewrite is None:
            base = rtp.rewrite(original, out_seq, ts + sub.ts_delta, sub.out_ssrc)
        else:
            # forwarded before a layer switch: the picture-id offsets it was sent with are gone,
            # and a copy with wrong picture ids is worse than none (a key frame request repairs it)
            sub.receiver.retransmissions_not_forwarded += 1
            return
        shown = stream if sub.out_ssrc == stream.ssrc else stream.sender.streams.get(sub.out_ssrc)
        rtx_stream = shown.rtx if shown is not None else None
        rtx_pt = stream.rtx_payload_types.get(b1 & 0x7F) if rtx_stream is not None else None
        if rtx_stream is not None and rtx_pt is not None:
            rtx_seqs = sub.receiver.rtx_seqs
            rtx_seq = rtx_seqs.get(rtx_stream.ssrc)
            if rtx_seq is None:
                rtx_seq = secrets.randbits(16)
            packet = rtp.wrap_rtx(base, rtx_pt, rtx_seq, rtx_stream.ssrc, out_seq)
            rtx_seqs[rtx_stream.ssrc] = (rtx_seq + 1) & 0xFFFF
        else:
            packet = bytes(base)
        sub.receiver.retransmissions += 1
        try:
            sub.receiver.send_rtp(packet)
        except SrtpError:
            pass

    # ---- RTCP ------------------------------------------------------------------------------

    def handle_rtcp(self, endpoint: EndpointMedia, compound: bytes, now: float) -> None:
        """A decrypted RTCP compound packet from ``endpoint``; malformed input is dropped whole."""
        try:
            packets = list(rtcp.iter_packets(compound))
        except rtcp.RtcpError:
            return
        for ptype, fmt, packet in packets:
            try:
                if ptype == rtcp.SR:
                    self._on_sender_report(endpoint, packet, fmt, now)
                elif ptype == rtcp.RR:
                    self._on_report_blocks(endpoint, rtcp.parse_report_blocks(packet, fmt, 8), now)
                elif ptype == rtcp.RTPFB and fmt == rtcp.FMT_NACK:
                    self._on_nack(endpoint, packet, now)
                elif ptype == rtcp.PSFB and fmt == rtcp.FMT_PLI:
                    sub = endpoint.subscriptions_by_out_ssrc.get(rtcp.feedback_ssrcs(packet)[1])
                    if sub is not None:
                        self.request_keyframe(sub.stream, now)
                elif ptype == rtcp.PSFB and fmt == rtcp.FMT_FIR:
                    for ssrc in rtcp.parse_fir_ssrcs(packet):
                        sub = endpoint.subscriptions_by_out_ssrc.get(ssrc)
                        if sub is not None:
                            self.request_keyframe(sub.stream, now)
                elif ptype == rtcp.PSFB and fmt == rtcp.FMT_REMB:
                    remb = rtcp.parse_remb(packet)
                    if remb is not None:
                        endpoint.remb_bps = remb[0]
                        for ssrc in remb[1]:
                            sub = endpoint.subscriptions_by_out_ssrc.get(ssrc)
                            if sub is not None:
                                sub.remb_bps = remb[0]
            except (rtcp.RtcpError, struct.error):
                continue

    def _on_sender_report(self, endpoint: EndpointMedia, packet: bytes, count: int, now: float) -> None:
        report = rtcp.parse_sr(packet)
        self._on_report_blocks(endpoint, rtcp.parse_report_blocks(packet, count, 28), now)
        stream = endpoint.streams.get(report.ssrc)
        if stream is None or stream.media is not None:
            return
        stream.last_sr = report
        stream.reception.sender_report(report.ntp, now)
        middle = (report.ntp >> 16) & 0xFFFFFFFF
        for sub in stream.subscriptions:
            reports = sub.reports_sent
            if len(reports) >= 8:
                del reports[next(iter(reports))]
            reports[middle] = now
            sub.receiver.send_rtcp(
                rtcp.build_sr(
                    rtcp.SenderReport(
                        sub.out_ssrc, report.ntp, report.rtp_timestamp + sub.ts_delta, sub.packets, sub.octets
                    )
                )
            )

    def _on_report_blocks(self, endpoint: EndpointMedia, blocks: list[rtcp.ReportBlock], now: float) -> None:
        video_lost = -1
        for block in blocks:
            sub = endpoint.subscriptions_by_out_ssrc.get(block.ssrc)
            if sub is not None:
                sub.fraction_lost = block.fraction_lost
                if sub.stream.kind == "video":
                    video_lost = max(video_lost, block.fraction_lost)
                sent_at = sub.reports_sent.get(block.lsr) if block.lsr else None
                if sent_at is not None:
                    # RFC 3550 6.4.1: round trip = arrival - LSR - DLSR, here measured from when
                    # the bridge relayed that SR (the receiver's own queueing counts, as it should)
                    rtt = now - sent_at - block.dlsr / 65536
                    if rtt >= 0:
                        old = endpoint.rtt
                        endpoint.rtt = rtt if old is None else old + RTT_SMOOTHING * (rtt - old)
        if video_lost >= 0:
            endpoint.video_fraction_lost = video_lost
            endpoint.video_loss_reports += 1

    def _on_nack(self, endpoint: EndpointMedia, packet: bytes, now: float) -> None:
        """Resend what the receiver lost, from the cache, within :class:`RetransmissionLimits`,
        and only packets it was forwarded (looked up by the sequence number it NACKs, so a
        remapping since then does not matter). Lost packets the bridge never got are asked
        from the sender."""
        endpoint.nacks_received += 1
        out_ssrc = rtcp.feedback_ssrcs(packet)[1]
        current = endpoint.subscriptions_by_out_ssrc.get(out_ssrc)
        if current is None:
            return
        limits = self.retransmission
        rtt = endpoint.rtt or 0.0
        interval = min(limits.max_interval, max(limits.min_interval, limits.rtt_factor * rtt))
        oldest = now - max(limits.max_age, limits.max_age_rtts * rtt)
        missing = []
        answered = 0
        media_bytes = -1
        for lost in rtcp.parse_nack(packet):
            sub = current
            original_seq = sub.sent.original(lost)
            if original_seq is None:
                # sent before a layer switch: from another stream shown under the same SSRC
                for other in endpoint.subscriptions.values():
                    if other is not current and other.out_ssrc == out_ssrc:
                        original_seq = other.sent.original(lost)
                        if original_seq is not None:
                            sub = other
                            break
            if original_seq is None:
                # never forwarded to it: lost before the bridge (then ask the sender, if the
                # sequence number is recent), or held back by the policy (then nothing)
                guess = (lost - current.seq_delta) & 0xFFFF
                if current.stream.cache.get(guess) is None and self._recent(current.stream, guess):
                    missing.append(guess)
                else:
                    endpoint.retransmissions_not_forwarded += 1
                continue
            sent = sub.sent
            if now - sent.last_resent(lost) < interval:
                endpoint.retransmissions_suppressed += 1
                continue
            cached = sub.stream.cache.get(original_seq)
            arrival = sub.stream.cache.arrival(original_seq)
            if cached is None or arrival is None or arrival < oldest:
                endpoint.retransmissions_too_old += 1  # or already gone from the cache
                continue
            if answered >= limits.max_per_nack:
                endpoint.retransmissions_dropped += 1
                continue
            if media_bytes < 0:
                media_bytes = endpoint.bytes_sent
            if not endpoint.retransmission_budget.take(len(cached) + 30, now, media_bytes):
                endpoint.retransmissions_dropped += 1
                continue
            sent.mark_resent(lost, now)
            answered += 1
            self._retransmit(sub, cached, lost)
        if missing:
            self._request_upstream(current.stream, missing, now)

    @staticmethod
    def _recent(stream: IncomingStream, seq: int) -> bool:
        """``seq`` is within ``UPSTREAM_NACK_MAX_GAP`` of the highest sequence number seen."""
        highest = stream.highest_seq
        if highest is None:
            return False
        distance = (highest - seq) & 0xFFFF
        return distance <= UPSTREAM_NACK_MAX_GAP or distance >= 0x10000 - UPSTREAM_NACK_MAX_GAP

    def _request_upstream(self, stream: IncomingStream, lost: list[int], now: float) -> None:
        """NACK the sender for ``lost`` packets it has not been asked for in the last
        ``UPSTREAM_NACK_RETRY`` seconds (the bridge's own gap detection and the receivers' NACKs
        for the same packet are merged)."""
        sender = stream.sender
        if not sender.connected:
            return
        requests = stream.nack_requests
        ask = [seq for seq in lost if now - requests.get(seq, -1e9) >= UPSTREAM_NACK_RETRY]
        if not ask:
            return
        if len(requests) > 512:
            for seq, when in list(requests.items()):
                if now - when > 1.0:
                    del requests[seq]
        for seq in ask:
            requests[seq] = now
        sender.nacks_sent += 1
        sender.send_rtcp(rtcp.build_nack(sender.rtcp_ssrc, stream.ssrc, ask))

    def request_keyframe(self, stream: IncomingStream, now: float) -> None:
        """PLI to the stream's sender, at most one per ``KEYFRAME_REQUEST_INTERVAL``."""
        if now - stream.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL or not stream.sender.connected:
            return
        stream.last_keyframe_request = now
        stream.sender.plis_forwarded += 1
        stream.sender.send_rtcp(rtcp.build_pli(stream.sender.rtcp_ssrc, stream.ssrc))

    def send_reports(self, now: float) -> None:
        """Periodic RTCP to each sender: receiver reports for what it sends us, and REMB with the
        lowest estimate its receivers reported (bounded by the configured range). A simulcast
        sender is not held to its slowest receiver (each receiver gets the layer its own estimate
        allows): it gets the upper bound, and its own loss-based control still applies."""
        for endpoint in self.endpoints.values():
            if not endpoint.connected:
                continue
            media = [s for s in endpoint.streams.values() if s.media is None and s.reception.received]
            if not media:
                continue
            packet = rtcp.build_rr(endpoint.rtcp_ssrc, [s.reception.report_block(now) for s in media])
            video = [s for s in media if s.kind == "video"]
            if video:
                estimates = [sub.remb_bps for s in video for sub in s.subscriptions if sub.remb_bps]
                simulcast = any(semantics == "SIM" for semantics, _ in endpoint.sources.ssrc_groups)
                bitrate = min(estimates) if estimates and not simulcast else self.remb_max_bps
                bitrate = max(self.remb_min_bps, min(self.remb_max_bps, bitrate))
                packet += rtcp.build_remb(endpoint.rtcp_ssrc, bitrate, [s.ssrc for s in video])
            try:
                endpoint.send_rtcp(packet)
            except SrtpError:
                continue
