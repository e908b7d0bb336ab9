"""The forwarder's model of a conference's media: what each endpoint sends (:class:`IncomingStream`),
what each receiver gets of each stream (:class:`Subscription`, cf. mediasoup's Consumer) and each
endpoint's media state and transport (:class:`EndpointMedia`). No I/O beyond the ``transmit``
callable the engine binds to its socket.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..allocation.send_side_bwe import SendHistory, SendSideEstimator
from ..model import MediaSources
from ..packets import rtcp
from ..packets.rid import RidBinder
from ..transport.aiortc_adapter import SrtpContext
from .mapping import ForwardingMapping
from .nack import PacketCache, RetransmissionBudget, RetransmissionLimits, SentLog
from .native import subscription_struct, write_mapping
from .transport_cc import FeedbackGenerator

if TYPE_CHECKING:
    from .native import NativeReceiver

Transmit = Callable[[bytes], None]


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
        "native_targets",
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
        # (subscriptions, the C loop's array of them) while those are what the policy selects:
        # every packet of a stream everyone gets (audio) skips building that array again
        self.native_targets: tuple[list[Subscription], Any] | None = None
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
    """One receiver's view of one incoming stream: the :class:`~.mapping.ForwardingMapping` it is
    forwarded under (the identity unless a policy's projection owns another), what was sent,
    and its feedback."""

    __slots__ = (
        "fraction_lost",
        "mapping",
        "native",
        "octets_by_python",
        "packets_by_python",
        "receiver",
        "remb_bps",
        "reports_sent",
        "sent",
        "stream",
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
        self.mapping = ForwardingMapping(stream.ssrc)
        if self.native is not None:
            write_mapping(self.native, self.mapping)
        self.packets_by_python = 0
        self.octets_by_python = 0  # RTP payload bytes
        self.remb_bps: int | None = None
        self.fraction_lost = 0

    def follow(self, mapping: ForwardingMapping) -> None:
        """Forward under ``mapping`` from now on (a projection's, after a simulcast switch): the
        receiver's feedback on its output SSRC now refers to this subscription, and the C loop's
        copy (``native.py``) is written here, the one place it is."""
        self.mapping = mapping
        self.receiver.subscriptions_by_out_ssrc[mapping.out_ssrc] = self
        if self.native is not None:
            write_mapping(self.native, mapping)

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
        self.srtp: SrtpContext | None = None
        """Protects what is sent to it, once DTLS is done (set with :meth:`set_srtp`)."""
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
        self.transport_cc_ext: int | None = None
        """The transport-wide sequence number's header extension id, when it negotiated one."""
        self.transport_cc: FeedbackGenerator | None = None
        """Arrival times of what it sends, for the transport-cc feedback the bridge sends it."""
        self.send_history: SendHistory | None = None
        """The bridge's transport-wide numbering of what it forwards to it (send-side estimate)."""
        self.send_side: SendSideEstimator | None = None
        """Its downlink estimate from its transport-cc feedback on that numbering."""
        self.transport_cc_feedback_received = 0

    def set_send_side(self, enabled: bool) -> None:
        """Number what is forwarded to it and estimate its downlink from its feedback (or stop)."""
        if enabled and self.send_history is None:
            self.send_history = SendHistory()
            self.send_side = SendSideEstimator(self.send_history)
        elif not enabled:
            self.send_history = self.send_side = None
        if self.native is not None:
            self.native.set_send_history(self.send_history)

    def set_srtp(self, srtp: SrtpContext | None) -> None:
        if self.native is not None:
            self.native.set_srtp(srtp)
        self.srtp = srtp

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
        return self.srtp is not None

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
