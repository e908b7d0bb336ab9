"""The SFU core of one conference: membership, streams and the RTP fan-out.

No sockets here. Each endpoint has a ``transmit(datagram)`` callable (the engine binds it to the
UDP socket and the endpoint's address) and, once DTLS is done, an SRTP context. The engine feeds
decrypted RTP/RTCP in with :meth:`ConferenceForwarder.handle_rtp` / :meth:`handle_rtcp`. The engine
may also give the forwarder a :class:`~.native.NativeFanout`: the same per-receiver loop in C,
sending on the engine's socket; the subscriptions keep the state it reads in step.

Per incoming RTP packet (cf. mediasoup's ``Router::OnTransportProducerRtpPacketReceived``): read
the header (``packets/rtp.py``), cache it for NACKs, ask the policy who gets it, and hand the packet to
each selected subscription: rewritten under its :class:`~.mapping.ForwardingMapping` when that
changes anything, noted in its sent log, protected once per receiver, transmitted.

The rest of a conference's media lives beside it, one concept per module: the stream and
subscription model (``streams.py``), NACK/RTX with its budget (``nack.py``, a
:class:`~.nack.Retransmitter`) and RTCP termination (``rtcp_termination.py``, an
:class:`~.rtcp_termination.RtcpTerminator`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..model import MediaSources
from ..packets import rtp, twcc
from ..packets.rid import RidBinder
from ..transport.aiortc_adapter import SrtpContext, SrtpError
from .nack import UPSTREAM_NACK_MAX_GAP, RetransmissionLimits, Retransmitter
from .policy import ForwardingPolicy
from .rtcp_termination import RtcpTerminator, request_keyframe
from .streams import EndpointMedia, IncomingStream, Subscription, Transmit
from .transport_cc import FeedbackGenerator

if TYPE_CHECKING:
    from .native import NativeFanout

log = logging.getLogger("parley.bridge.media")

_unpack_header = rtp.unpack_header
_PAYLOAD_TYPE = rtp.PAYLOAD_TYPE_MASK


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
        send_side_bwe: bool = False,
    ) -> None:
        self.id = conference_id
        self.send_side_bwe = send_side_bwe
        """Number what is forwarded to receivers that negotiated transport-cc and estimate their
        downlinks from their feedback (allocation/send_side_bwe.py); off: their numbers are
        stripped and they keep sending REMB."""
        self.native = native
        """The per-receiver loop in C, or None: Python does it (see handle_rtp)."""
        self.retransmission = retransmission or RetransmissionLimits()
        self.policy = policy
        self.endpoints: dict[str, EndpointMedia] = {}
        self.cache_size = cache_size
        self.packets_forwarded = 0
        self.retransmitter = Retransmitter(policy, self.retransmission)
        self.rtcp = RtcpTerminator(self.endpoints, self.retransmitter, remb_min_bps, remb_max_bps)

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
        endpoint.set_srtp(None)
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
        endpoint.transport_cc_ext = sources.header_extension_id(twcc.URI)
        if endpoint.transport_cc_ext is None:
            endpoint.transport_cc = None
        elif endpoint.transport_cc is None:
            endpoint.transport_cc = FeedbackGenerator()
        endpoint.set_send_side(self.send_side_bwe and endpoint.transport_cc_ext is not None)
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
        endpoint.set_srtp(srtp)
        self._rebuild()
        self.policy.on_transport(endpoint_id, srtp is not None)
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
                        receiver.subscriptions_by_out_ssrc[sub.mapping.out_ssrc] = sub
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
                    if receiver.subscriptions_by_out_ssrc.get(sub.mapping.out_ssrc) is sub:
                        del receiver.subscriptions_by_out_ssrc[sub.mapping.out_ssrc]

    # ---- RTP -------------------------------------------------------------------------------

    def handle_rtp(self, sender: EndpointMedia, packet: bytes, now: float) -> None:
        """A decrypted RTP packet from ``sender``: cache it and fan it out."""
        if len(packet) < 12:
            return
        _, marker_pt, seq, ts, ssrc = _unpack_header(packet)
        feedback = sender.transport_cc
        forwarded = packet
        stamp_at = -1
        if feedback is not None:
            # every packet on the transport counts, whatever its stream (RTX, probes, unknown)
            element, value = twcc.find_sequence(packet, sender.transport_cc_ext)  # type: ignore[arg-type]
            if value >= 0:
                feedback.on_packet((packet[value] << 8) | packet[value + 1], int(now * 1_000_000))
                if feedback.due(now):
                    self.rtcp.send_transport_feedback(sender, ssrc, now)
                # the sender's number goes no further: padding in what is kept for repairs, and
                # either padding or each receiver's own number in what is forwarded
                stripped = packet[:element] + bytes(value + 2 - element) + packet[value + 2 :]
                if self.send_side_bwe:
                    stamp_at = value
                else:
                    forwarded = stripped
                packet = stripped
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
            self.retransmitter.on_rtx(media, packet, now)
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
                    self.retransmitter.request_upstream(
                        stream, [(highest + i) & 0xFFFF for i in range(1, gap)], now
                    )
        if stream.audio_level_ext is not None:
            level = rtp.audio_level(packet, stream.audio_level_ext)
            if level is not None:
                self.policy.observe_audio_level(stream, level[0], level[1], now)
        subscriptions = self.policy.select(stream, packet, marker_pt & _PAYLOAD_TYPE, stream.subscriptions)
        self.packets_forwarded += len(subscriptions)
        packet = forwarded
        if self.native is not None and subscriptions:
            # the same loop in C; it leaves payload rewrites and a full socket buffer to this one
            if subscriptions is stream.subscriptions:  # everyone: its C array is kept with it
                kept = stream.native_targets
                if kept is None or kept[0] is not subscriptions:
                    kept = stream.native_targets = (stream.subscriptions, self.native.targets(subscriptions))
                subscriptions = self.native.forward(packet, subscriptions, stamp_at, kept[1])
            else:
                subscriptions = self.native.forward(packet, subscriptions, stamp_at)
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
            mapping = sub.mapping
            out = mapping.apply(packet, seq, ts) if mapping.rewrite else packet
            if stamp_at >= 0 and receiver.send_history is not None:  # its own transport-wide number
                numbered = bytearray(out)
                number = receiver.send_history.record(int(now * 1_000_000), len(numbered))
                numbered[stamp_at] = number >> 8
                numbered[stamp_at + 1] = number & 0xFF
                out = bytes(numbered)
            try:
                data = srtp.protect(out)
            except SrtpError:
                continue
            sub.sent.record((seq + mapping.seq_delta) & 0xFFFF, seq)
            sub.packets_by_python += 1
            sub.octets_by_python += octets
            outgoing.append((receiver.transmit, data))
        for transmit, data in outgoing:
            transmit(data)

    # ---- RTCP (rtcp_termination.py) --------------------------------------------------------

    def handle_rtcp(self, endpoint: EndpointMedia, compound: bytes, now: float) -> None:
        """A decrypted RTCP compound packet from ``endpoint``; malformed input is dropped whole."""
        self.rtcp.handle_rtcp(endpoint, compound, now)

    def request_keyframe(self, stream: IncomingStream, now: float) -> None:
        """PLI to the stream's sender (rate-limited)."""
        request_keyframe(stream, now)

    def send_reports(self, now: float) -> None:
        """Periodic RTCP to each sender (receiver reports and REMB)."""
        self.rtcp.send_reports(now)
