"""NACK and RTX: answering receivers' NACKs from the bridge's packet cache, asking senders for
what the bridge itself lost, relaying senders' retransmissions. No I/O (packets go out through
each endpoint's ``send_rtp``/``send_rtcp``).

cf. mediasoup's ``RtpRetransmissionBuffer`` (:class:`PacketCache`, the last packets of a stream
by sequence number), ``NackGenerator`` (:meth:`Retransmitter.request_upstream`: what the bridge
lost on a sender's uplink, from its own gap detection in the forwarder and from receivers' NACKs
for packets it never got, merged) and its per-consumer retransmission: RTX (RFC 4588) when the
sender negotiated it.

NACKs (RFC 4585 generic NACK) are answered only with packets the receiver was actually
forwarded -- each subscription's :class:`SentLog` maps an outgoing sequence number back to the
stream's own, so never a stream, layer or stretch the policy kept from it -- and under storm
protection (:class:`RetransmissionLimits`): a packet is not resent to the same receiver again
within about a round trip, nor when it is older than is useful, and each receiver has a
retransmission budget (:class:`RetransmissionBudget`, a token bucket, a share of its media rate).
"""

from __future__ import annotations

import secrets
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.token_bucket import TokenBucket

from ..packets import rtcp, rtp
from ..transport.aiortc_adapter import SrtpError

if TYPE_CHECKING:
    from .policy import ForwardingPolicy
    from .streams import EndpointMedia, IncomingStream, Subscription

UPSTREAM_NACK_RETRY = 0.1  # seconds before the bridge asks a sender again for the same packet
UPSTREAM_NACK_MAX_GAP = 64  # a larger jump is a restart or a pause, not loss
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
    at least ``min_bps``, and holds ``burst`` seconds of that rate (the shared bucket of
    ``services/common/token_bucket.py``, its rate and size set anew as the media rate changes)."""

    __slots__ = ("_bucket", "_bytes", "_last", "_rate_bps", "burst", "min_bps", "share")

    def __init__(self, share: float = 0.5, min_bps: float = 200_000, burst: float = 0.25) -> None:
        self.share, self.min_bps, self.burst = share, min_bps, burst
        self._last = 0.0
        self._bytes = 0
        self._rate_bps = 0.0
        self._bucket: TokenBucket | None = None  # full at the first retransmission

    @property
    def rate_bps(self) -> float:
        """What the bucket fills at now."""
        return max(self.min_bps, self.share * self._rate_bps)

    def take(self, size: int, now: float, media_bytes: int) -> bool:
        """Spend ``size`` bytes if the bucket holds them. ``media_bytes``: total bytes the
        receiver was sent so far (its media rate is measured from it)."""
        bucket = self._bucket
        if bucket is None:
            bucket = self._bucket = TokenBucket(self.rate_bps / 8, self.rate_bps / 8 * self.burst, now)
            self._last, self._bytes = now, media_bytes
        elapsed = now - self._last
        if elapsed > 0:
            sample = (media_bytes - self._bytes) * 8 / elapsed
            weight = min(1.0, elapsed)  # about a one-second average
            self._rate_bps += weight * (sample - self._rate_bps)
            bucket.rate = self.rate_bps / 8
            bucket.burst = bucket.rate * self.burst
            self._last, self._bytes = now, media_bytes
        return bucket.take(now, size)


class Retransmitter:
    """One conference's NACK and RTX handling (the conference's forwarder owns one)."""

    def __init__(self, policy: ForwardingPolicy, limits: RetransmissionLimits) -> None:
        self.policy = policy
        self.limits = limits
        self.redundant_rtx_dropped = 0
        """Sender RTX packets carrying a packet the bridge already had (not relayed, not counted)."""

    def on_rtx(self, media: IncomingStream, packet: bytes, now: float) -> None:
        """A retransmission the sender made (after our NACK): restore it into the media stream's
        cache and pass it on to the subscribers as their RTX.

        A packet the cache already holds is dropped: the receivers were sent the original, and
        one that lost it asks the bridge, which answers from the cache. Chrome sends such
        redundant RTX as bandwidth-probe padding (old payloads again); relaying it would cost
        every receiver that much bandwidth, and the policy would meter it as the layer's bitrate.
        """
        pt = rtp.payload_type(packet)
        media_pt = next((m for m, r in media.rtx_payload_types.items() if r == pt), None)
        if media_pt is None:
            return
        try:
            original = rtp.unwrap_rtx(packet, media_pt, media.ssrc)
        except rtp.RtpError:
            return
        seq = rtp.sequence_number(original)
        if media.cache.get(seq) is not None:
            self.redundant_rtx_dropped += 1
            return
        media.cache.put(seq, original, now)
        for sub in self.policy.select(media, original, rtp.payload_type(original), media.subscriptions):
            out_seq = (seq + sub.mapping.seq_delta) & 0xFFFF
            sub.sent.record(out_seq, seq)
            sub.sent.mark_resent(out_seq, now)
            self.retransmit(sub, original)

    def retransmit(self, sub: Subscription, original: bytes, out_seq: int | None = None) -> None:
        """Send a cached packet again to one subscriber (as ``out_seq``, by default under its
        current sequence mapping), as RTX when the stream has RTX.

        The RTX SSRC is the one paired (``FID``) with the SSRC the receiver sees, which differs
        from the stream's own when a policy remaps it (a simulcast layer shown as another); the
        receiver's RTX sequence numbers are kept per RTX SSRC so layer switches do not reuse them.
        """
        stream = sub.stream
        mapping = sub.mapping
        seq, ts = rtp.sequence_number_and_timestamp(original)
        if out_seq is None:
            out_seq = (seq + mapping.seq_delta) & 0xFFFF
        if out_seq == (seq + mapping.seq_delta) & 0xFFFF:
            # forwarded under the current mapping: header and payload (VP8 picture ids) as sent
            base: bytes | bytearray = mapping.apply(original, seq, ts)
        elif mapping.payload_rewrite is None:
            base = rtp.rewrite(original, out_seq, ts + mapping.ts_delta, mapping.out_ssrc)
        else:
            # forwarded before a layer switch: the picture-id offsets it was sent with are gone,
            # and a copy with wrong picture ids is worse than none (a key frame request repairs it)
            sub.receiver.retransmissions_not_forwarded += 1
            return
        shown = stream if mapping.out_ssrc == stream.ssrc else stream.sender.streams.get(mapping.out_ssrc)
        rtx_stream = shown.rtx if shown is not None else None
        rtx_pt = stream.rtx_payload_types.get(rtp.payload_type(original)) if rtx_stream is not None else None
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

    def on_nack(self, endpoint: EndpointMedia, packet: bytes, now: float) -> None:
        """Resend what the receiver lost, from the cache, within :class:`RetransmissionLimits`,
        and only packets it was forwarded (looked up by the sequence number it NACKs, so a
        remapping since then does not matter). Lost packets the bridge never got are asked
        from the sender."""
        endpoint.nacks_received += 1
        out_ssrc = rtcp.feedback_ssrcs(packet)[1]
        current = endpoint.subscriptions_by_out_ssrc.get(out_ssrc)
        if current is None:
            return
        limits = self.limits
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
                    if other is not current and other.mapping.out_ssrc == out_ssrc:
                        original_seq = other.sent.original(lost)
                        if original_seq is not None:
                            sub = other
                            break
            if original_seq is None:
                # never forwarded to it: lost before the bridge (then ask the sender, if the
                # sequence number is recent), or held back by the policy (then nothing)
                guess = (lost - current.mapping.seq_delta) & 0xFFFF
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
            self.retransmit(sub, cached, lost)
        if missing:
            self.request_upstream(current.stream, missing, now)

    @staticmethod
    def _recent(stream: IncomingStream, seq: int) -> bool:
        """``seq`` is within ``UPSTREAM_NACK_MAX_GAP`` of the highest sequence number seen."""
        highest = stream.highest_seq
        if highest is None:
            return False
        distance = (highest - seq) & 0xFFFF
        return distance <= UPSTREAM_NACK_MAX_GAP or distance >= 0x10000 - UPSTREAM_NACK_MAX_GAP

    def request_upstream(self, stream: IncomingStream, lost: list[int], now: float) -> None:
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
