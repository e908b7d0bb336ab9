"""One conference's intelligence: the forwarding policy the bridge runs per conference. No I/O.

:class:`ConferenceIntelligencePolicy` fills the forwarder's policy seam (``forwarding/policy.py``) with the
cores of this package, each owning one concept:

* the video allocation (``video_policy.py`` over ``allocator.py`` and ``settings.py``: last-N,
  receiver constraints, layers within each receiver's bandwidth);
* the stream fan-out targets the packet path walks (``fanout.py``), each receiver's projection
  (:class:`~..forwarding.simulcast.SimulcastProjection`, or ``forwarding/svc.py``'s for VP9 SVC)
  owning what it sees of a stream;
* dominant-speaker detection (``speaker.py``), the layer meter (``forwarding/simulcast.py``'s
  ``LayerMeter``), each receiver's downlink estimate (``bandwidth.py``), media connectivity
  (``connectivity.py``);
* audio subscriptions (:class:`AudioSubscription`) and, for mixer channels, the
  :class:`~.mixer.MixMinusMixer` the policy feeds (its thread is owned by the conference
  policies registry, ``services/bridge/policies.py``, which creates and closes every policy).

Built per conference by :func:`intelligence_policy_factory` (``MediaEngine(config,
policy_factory=...)``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.bridge_channel import (
    BridgeChannelMessage,
    DominantSpeakerEndpointChangeEvent,
    EndpointConnectivityStatusChangeEvent,
    LastNChangedEvent,
    ReceiverAudioSubscription,
    ReceiverVideoConstraints,
    SourceVideoTypeMessage,
)

from ..forwarding.mapping import ForwardingMapping
from ..forwarding.policy import ForwardingPolicy, RequestKeyframe, SendMessage
from ..forwarding.simulcast import (
    LayerMeter,
    ParsedPacket,
    SimulcastLayer,
    VideoSource,
    audio_source_name,
    parse_h264_packet,
    parse_packet,
    parse_vp9_packet,
    video_sources,
)
from ..model import MediaSources
from ..packets import red, rtp
from ..packets.codecs import H264, OPUS, RED, VP8, VP9, CodecMap
from .allocator import smoothed_layer_rates
from .bandwidth import DownlinkEstimator
from .connectivity import ConnectivityMonitor
from .fanout import StreamFanout
from .mixer import MixedRtpStream, MixMinusMixer
from .settings import UNLIMITED
from .speaker import DominantSpeakerDetector, SpeakerDetectorSettings
from .video_policy import ConferenceVideoPolicy

if TYPE_CHECKING:
    from ..forwarding.streams import EndpointMedia, IncomingStream, Subscription

log = logging.getLogger("parley.bridge.intelligence")

SVC_RELEARN_INTERVAL = 2.0
"""Seconds between two changes of a VP9 stream's spatial layer count taken from its key pictures;
a change that comes sooner is taken when the interval is over (the stream keeps the structure
of its latest key picture until the next one, which may not come for minutes)."""


@dataclass(frozen=True)
class AudioSubscription:
    """Which audio sources a receiver takes (``ReceiverAudioSubscription``): everything, only
    ``include``, or everything but ``exclude``."""

    everything: bool = True
    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    @classmethod
    def of(cls, message: ReceiverAudioSubscription) -> AudioSubscription:
        if message.all:
            return cls()
        if message.include is not None:
            return cls(False, frozenset(message.include), frozenset(message.exclude or ()))
        if message.exclude:
            return cls(False, None, frozenset(message.exclude))
        return cls()

    def wants(self, source: str) -> bool:
        if self.everything:
            return True
        if self.include is not None and source not in self.include:
            return False
        return source not in self.exclude


class ConferenceIntelligencePolicy(ForwardingPolicy):
    """The forwarder's policy seam (``forwarding/policy.py``) filled with this package's cores.

    * audio levels -> :class:`DominantSpeakerDetector`; a new dominant speaker is announced to
      every endpoint (``DominantSpeakerEndpointChangeEvent``) and reorders last-N;
    * ``LastNChangedEvent`` / ``ReceiverVideoConstraints`` / Colibri ``last-n`` and each
      receiver's REMB and receiver-report loss (kept on its ``EndpointMedia``, read every
      ``allocation_interval``) -> :class:`ConferenceVideoPolicy` (estimate and upward probe),
      whose changes go out as ``ForwardedSources``, ``SenderSourceConstraints`` and
      ``ConnectionStats``;
    * per video packet, :meth:`select` keeps the subscriptions whose receiver's projection
      accepts it, each forwarding under the projection's mapping (SSRC, sequence numbers,
      timestamps, picture ids);
    * per audio packet, when some endpoint has a mixer channel (:meth:`set_audio_mixing`), the
      Opus payload goes to the :class:`MixMinusMixer` and mixer channels are left out; the
      mixer's output (:meth:`deliver_mix`, on the event loop) is sent as RTP on each mixer
      receiver's own SSRC. The policy starts no thread: whoever owns it ticks the mixer
      (:meth:`mix_once`, or a :class:`~.mixer.MixerThread` the conference policies registry
      starts and stops when :attr:`on_mixing` tells it mixing began or ended).

    Work per packet is a dict lookup and one :meth:`SimulcastProjection.accept` per receiver
    (the stream's routes matched to its subscriptions are kept in a :class:`StreamFanout`);
    speaker decisions run every ``decision_interval`` and reallocation every
    ``allocation_interval`` (and on every message), driven by the packets' own clock.

    Key frames for streams a receiver starts, or waits to switch to, are asked for through
    ``request_keyframe`` (``forwarding/rtcp_termination.py``'s, given at construction).
    """

    def __init__(
        self,
        send_message: SendMessage | None = None,
        request_keyframe: RequestKeyframe | None = None,
        *,
        default_max_height: int = UNLIMITED,
        decision_interval: float = 0.3,
        allocation_interval: float = 1.0,
        speaker_settings: SpeakerDetectorSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_mixing: Callable[[MixMinusMixer | None], None] | None = None,
    ) -> None:
        super().__init__(send_message, request_keyframe)
        self.video = ConferenceVideoPolicy(default_max_height)
        self.speakers = DominantSpeakerDetector(speaker_settings)
        self.connectivity = ConnectivityMonitor()
        self.meter = LayerMeter()
        self.estimators: dict[str, DownlinkEstimator] = {}
        self.decision_interval = decision_interval
        self.allocation_interval = allocation_interval
        self._clock = clock
        self._known_sources: dict[str, MediaSources] = {}
        self._simulcast_ssrcs: set[int] = set()
        self._vp8_payload_types: dict[str, frozenset[int]] = {}  # endpoint -> its VP8 payload types
        # endpoint -> its VP9 and H.264 payload types, whose packets are looked into
        self._other_video_payload_types: dict[str, frozenset[int]] = {}
        self._codecs: dict[str, CodecMap] = {}  # endpoint -> its negotiated payload types
        self._svc_layers: dict[int, int] = {}  # VP9 SVC stream SSRC -> its spatial layers
        self._svc_changed: dict[int, float] = {}  # VP9 stream SSRC -> when its layer count last changed
        # VP9 stream SSRC -> (its endpoint, the layer count of its latest key picture) not taken
        # yet because the previous change was less than SVC_RELEARN_INTERVAL ago
        self._svc_pending: dict[int, tuple[str, int]] = {}
        # endpoint -> its RED and Opus payload types
        self._red: dict[str, tuple[MediaSources, frozenset[int], frozenset[int]]] = {}
        self._red_strip: dict[int, ForwardingMapping] = {}  # audio SSRC -> RED stripped to Opus
        self._streams: dict[int, IncomingStream] = {}
        self._fanouts: dict[int, StreamFanout] = {}  # by stream SSRC
        self._feedback: dict[str, Subscription] = {}  # receiver -> its latest forwarded video subscription
        self._reports_read: dict[str, int] = {}  # receiver -> its video_loss_reports at the last tick
        self._layer_rates: dict[str, tuple[float, ...]] = {}  # source -> smoothed layer bitrates
        self._next_decision = float("-inf")
        self._next_allocation = float("-inf")
        # audio mixing for "rtp-level-relay-type": "mixer" channels (created on first use)
        self.mixer: MixMinusMixer | None = None
        self.on_mixing = on_mixing
        """Told the mixer when the first mixer channel appears and ``None`` when the last one
        goes: the owner of the mixing clock (a thread) starts and stops it then."""
        self._mixed: dict[str, MixedRtpStream] = {}  # mixer receiver -> its mixed stream
        self._media: dict[str, EndpointMedia] = {}  # endpoint -> where to send its mix
        self._audio_subscriptions: dict[str, AudioSubscription] = {}  # only receivers not taking all

    # --- membership and control ---------------------------------------------------------------
    def on_endpoint_added(self, endpoint_id: str) -> None:
        self.video.add_endpoint(endpoint_id)
        # nothing can be sent to it before its transport is up: until then it asks no sender
        # for video (on_transport)
        self.video.set_reachable(endpoint_id, False)
        self.speakers.add_endpoint(endpoint_id)
        self.connectivity.add(endpoint_id, self._clock())
        self.estimators.setdefault(endpoint_id, DownlinkEstimator())

    def on_endpoint_removed(self, endpoint_id: str) -> None:
        self.set_audio_mixing(endpoint_id, False)
        self._media.pop(endpoint_id, None)
        self._audio_subscriptions.pop(endpoint_id, None)
        if self.mixer is not None:
            self.mixer.remove_endpoint(endpoint_id)
        self.video.remove_endpoint(endpoint_id)
        self.speakers.remove_endpoint(endpoint_id)
        self.connectivity.remove(endpoint_id)
        self.estimators.pop(endpoint_id, None)
        self._known_sources.pop(endpoint_id, None)
        self._vp8_payload_types.pop(endpoint_id, None)
        self._other_video_payload_types.pop(endpoint_id, None)
        self._codecs.pop(endpoint_id, None)
        self._red.pop(endpoint_id, None)
        self._feedback.pop(endpoint_id, None)
        self._reports_read.pop(endpoint_id, None)
        self._streams = {ssrc: s for ssrc, s in self._streams.items() if s.endpoint_id != endpoint_id}
        self._svc_layers = {ssrc: n for ssrc, n in self._svc_layers.items() if ssrc in self._streams}
        self._svc_changed = {ssrc: t for ssrc, t in self._svc_changed.items() if ssrc in self._streams}
        self._svc_pending = {ssrc: p for ssrc, p in self._svc_pending.items() if p[0] != endpoint_id}
        self._red_strip = {}
        self._fanouts = {ssrc: f for ssrc, f in self._fanouts.items() if ssrc in self._streams}
        self._reallocate(self._clock())

    def on_transport(self, endpoint_id: str, connected: bool) -> None:
        if self.video.set_reachable(endpoint_id, connected):
            self._reallocate(self._clock())

    def on_channel_open(self, endpoint_id: str) -> None:
        """``endpoint_id``'s bridge channel opened: tell it what it missed, since both are sent
        only on change: who is interrupted now, and who holds the floor (as jitsi-videobridge
        tells a new endpoint the dominant speaker)."""
        for other, active in self.connectivity.status_for_new_channel(endpoint_id):
            self._send(
                endpoint_id,
                EndpointConnectivityStatusChangeEvent(endpoint=other, active="true" if active else "false"),
            )
        floor = self.speakers.current()
        if floor is not None:
            self._send(
                endpoint_id,
                DominantSpeakerEndpointChangeEvent(
                    dominant_speaker_endpoint=floor.dominant,
                    previous_speakers=list(floor.previous_speakers),
                    silence=floor.silence,
                ),
            )

    def set_colibri_last_n(self, endpoint_id: str, last_n: int) -> None:
        """The ``last-n`` of the endpoint's Colibri video channel (-1 = unlimited)."""
        self.video.set_colibri_last_n(endpoint_id, last_n)
        self._reallocate(self._clock())

    def set_audio_mixing(self, endpoint_id: str, mixed: bool) -> int | None:
        """Make ``endpoint_id``'s audio channel a mixer channel (``"rtp-level-relay-type":
        "mixer"``) or a translator one again. A mixer channel gets one Opus stream, everyone
        else mixed, instead of the individual streams; returns that stream's SSRC (the Colibri
        channel's ``sources``), ``None`` when mixing is turned off."""
        if not mixed:
            if self._mixed.pop(endpoint_id, None) is not None and self.mixer is not None:
                self.mixer.remove_receiver(endpoint_id)
                if not self._mixed and self.on_mixing is not None:
                    self.on_mixing(None)
            return None
        if self.mixer is None:
            self.mixer = MixMinusMixer()
        stream = self._mixed.get(endpoint_id)
        if stream is None:
            stream = self._mixed[endpoint_id] = MixedRtpStream(
                secrets.randbits(32) or 1, seq=secrets.randbits(16), timestamp=secrets.randbits(32)
            )
            self.mixer.add_receiver(endpoint_id)
            if len(self._mixed) == 1 and self.on_mixing is not None:
                self.on_mixing(self.mixer)
        return stream.ssrc

    def mix_once(self) -> None:
        """One 20 ms mixing tick on the caller's thread (what the mixer thread does)."""
        if self.mixer is not None:
            self.deliver_mix(self.mixer.mix())

    def deliver_mix(self, out: list[tuple[str, bytes]]) -> None:
        """Send one mixing tick's output (receiver, Opus payload) to the mixer receivers."""
        for receiver, payload in out:
            stream = self._mixed.get(receiver)
            media = self._media.get(receiver)
            if stream is not None and media is not None and media.connected:
                media.send_rtp(stream.packet(payload))

    def on_message(self, endpoint_id: str, message: BridgeChannelMessage) -> None:
        parsed = message  # parsed and validated once, by the bridge channel (channel/dispatch.py)
        if isinstance(parsed, LastNChangedEvent | ReceiverVideoConstraints):
            self.video.on_message(endpoint_id, parsed)
            self._reallocate(self._clock())
        elif isinstance(parsed, SourceVideoTypeMessage):
            if self.video.set_video_type(endpoint_id, parsed.source_name, parsed.video_type):
                log.info(
                    "endpoint %s: source %s is now %s", endpoint_id, parsed.source_name, parsed.video_type
                )
                self._reallocate(self._clock())
        elif isinstance(parsed, ReceiverAudioSubscription):
            audio = AudioSubscription.of(parsed)
            if audio.everything:
                self._audio_subscriptions.pop(endpoint_id, None)
            else:
                self._audio_subscriptions[endpoint_id] = audio

    # --- packet path ----------------------------------------------------------------------------
    # (``stream.sender.id`` rather than the ``endpoint_id`` property: one call less per packet)
    def observe_audio_level(self, stream: IncomingStream, level: int, voice: bool, now: float) -> None:
        self.speakers.observe(stream.sender.id, level, now)
        if now >= self._next_decision:
            self._tick(now)

    def select(
        self, stream: IncomingStream, packet: bytes, payload_type: int, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        now = self._clock()
        sender = stream.sender
        self.connectivity.on_media(sender.id, now)
        if stream.kind != "video":
            # the sender's RED payload types, read here without a call while its sources hold
            known = self._red.get(sender.id)
            if known is None or known[0] is not sender.sources:
                red = self._audio_payload_types(sender)[0]
            else:
                red = known[1]
            if payload_type in red:
                subscriptions = self._red_audio(stream, subscriptions)
            if self.mixer is not None:
                subscriptions = self._mix_audio(stream, packet, payload_type, subscriptions)
            if self._audio_subscriptions:
                source = audio_source_name(stream.endpoint_id)
                subscriptions = [
                    sub
                    for sub in subscriptions
                    if sub.receiver.id not in self._audio_subscriptions
                    or self._audio_subscriptions[sub.receiver.id].wants(source)
                ]
            return subscriptions
        if self._known_sources.get(sender.id) is not sender.sources:
            self._learn_sources(sender.id, sender.sources, now)
        ssrc = stream.ssrc
        self.meter.on_packet(ssrc, len(packet), now)
        if payload_type in self._other_video_payload_types.get(sender.id, ()):
            parsed = self._other_codec(sender.id, ssrc, payload_type, packet, now)
        else:
            parsed = parse_packet(packet, payload_type in self._vp8_payload_types.get(sender.id, ()))
        if ssrc in self._simulcast_ssrcs and parsed.vp8_keyframe() is not None:
            # learn layer heights from key frames (the descriptor is read only at frame starts)
            self.meter.on_keyframe(ssrc, packet, parsed.payload_offset, parsed.end)
        if ssrc not in self._streams:
            self._streams[ssrc] = stream
        if now >= self._next_decision:
            self._tick(now)
        routes = self.video.routes.get(ssrc)
        if not routes:
            return ()
        fanout = self._fanouts.get(ssrc)
        if fanout is None or fanout.routes is not routes or fanout.subscriptions is not subscriptions:
            fanout = self._fanouts[ssrc] = StreamFanout(routes, subscriptions)
        feedback = self._feedback
        selected = []
        for target in fanout.targets:
            projection = target.projection
            if not projection.accept(packet, target.layer, now, parsed):
                continue
            sub = target.subscription
            if sub.mapping is not projection.mapping:  # the projection switched layers
                sub.follow(projection.mapping)
            # the receiver's REMB and loss are read from a subscription it is being sent now
            feedback[target.receiver] = sub
            selected.append(sub)
        return selected

    def _other_codec(self, endpoint_id: str, ssrc: int, pt: int, packet: bytes, now: float) -> ParsedPacket:
        """Parse a VP9 or H.264 packet; VP9: meter its spatial layers and learn its scalability
        structure (the spatial layers become the source's layers, ``svc.py``)."""
        codecs = self._codecs.get(endpoint_id)
        if codecs is not None and codecs.codec(pt) == H264:
            return parse_h264_packet(packet)
        parsed = parse_vp9_packet(packet)
        desc = parsed.vp9
        if desc is None:
            return parsed
        if ssrc in self._svc_layers:
            self.meter.on_packet(LayerMeter.svc_key(ssrc, desc.layer), len(packet), now)
        if desc.spatial_layers and desc.starts_key_picture:
            layers = desc.spatial_layers if len(desc.resolutions) == desc.spatial_layers else 1
            if layers > 1:
                self.meter.on_svc_structure(ssrc, [h for _, h in desc.resolutions])
            if self._svc_layers.get(ssrc, 1) == layers:
                self._svc_pending.pop(ssrc, None)
            else:
                self._svc_pending[ssrc] = (endpoint_id, layers)
                if now - self._svc_changed.get(ssrc, -1e9) >= SVC_RELEARN_INTERVAL:
                    self._take_svc_structure(ssrc, now)
                # else taken by a later tick (_take_due_svc_structures): a sender alternating
                # its structure re-runs the allocation at most every SVC_RELEARN_INTERVAL
        return parsed

    def _take_svc_structure(self, ssrc: int, now: float) -> None:
        """Make the spatial layer count of the stream's latest key picture its source's layers."""
        endpoint_id, layers = self._svc_pending.pop(ssrc)
        self._svc_changed[ssrc] = now
        log.info("endpoint %s: VP9 stream %d sends %d spatial layers", endpoint_id, ssrc, layers)
        if layers > 1:
            self._svc_layers[ssrc] = layers
        else:
            self._svc_layers.pop(ssrc, None)
        sources = self._known_sources.get(endpoint_id)
        if sources is not None:
            self._learn_sources(endpoint_id, sources, now)

    def _take_due_svc_structures(self, now: float) -> None:
        for ssrc in [s for s in self._svc_pending if now - self._svc_changed.get(s, -1e9) >= SVC_RELEARN_INTERVAL]:
            self._take_svc_structure(ssrc, now)

    def _audio_payload_types(self, media: EndpointMedia) -> tuple[frozenset[int], frozenset[int]]:
        """The RED and the Opus payload types ``media`` negotiated (kept until its sources change)."""
        known = self._red.get(media.id)
        if known is None or known[0] is not media.sources:
            codecs = CodecMap(media.sources.payload_types)
            known = self._red[media.id] = (media.sources, codecs.payload_types_of(RED), codecs.payload_types_of(OPUS))
        return known[1], known[2]

    def _red_payload_types(self, media: EndpointMedia) -> frozenset[int]:
        return self._audio_payload_types(media)[0]

    def _red_audio(self, stream: IncomingStream, subscriptions: Sequence[Subscription]) -> Sequence[Subscription]:
        """A RED packet (RFC 2198): as it is to receivers that negotiated RED, stripped to its
        primary (Opus) block to the others."""
        strip = self._red_strip.get(stream.ssrc)
        if strip is None:
            strip = self._red_strip[stream.ssrc] = ForwardingMapping(
                stream.ssrc, stream.ssrc, 0, 0, _strip_red(self._red_payload_types(stream.sender))
            )
        for sub in subscriptions:
            wanted = sub.mapping if self._red_payload_types(sub.receiver) else strip
            if sub.mapping is not wanted:
                sub.follow(wanted)
        return subscriptions

    def _mix_audio(
        self, stream: IncomingStream, packet: bytes, pt: int, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        """Hand the Opus payload to the mixer (``pt``: the packet's payload type); mixer
        channels do not get the stream itself."""
        assert self.mixer is not None
        offset, end = rtp.payload_bounds(packet)
        if offset >= 0:
            red_pts, opus_pts = self._audio_payload_types(stream.sender)
            if pt in red_pts:
                primary = red.primary_payload(packet, offset, end)
                if primary is not None:
                    self.mixer.push(stream.endpoint_id, primary)
            elif pt in opus_pts or not opus_pts:  # not telephone-event (RFC 4733) or comfort noise
                self.mixer.push(stream.endpoint_id, bytes(packet[offset:end]))
        selected = []
        for sub in subscriptions:
            receiver = sub.receiver.id
            if receiver in self._mixed:
                if receiver not in self._media:
                    self._media[receiver] = sub.receiver
            else:
                selected.append(sub)
        return selected

    # --- decisions ------------------------------------------------------------------------------
    def _learn_sources(self, endpoint_id: str, sources: MediaSources, now: float) -> None:
        self._known_sources[endpoint_id] = sources
        codecs = self._codecs[endpoint_id] = CodecMap(sources.payload_types)
        self._vp8_payload_types[endpoint_id] = codecs.payload_types_of(VP8)
        self._other_video_payload_types[endpoint_id] = codecs.payload_types_of(VP9) | codecs.payload_types_of(H264)
        try:
            video = [self._svc(source) for source in video_sources(endpoint_id, sources)]
        except ValueError as exc:
            log.warning("endpoint %s: video sources ignored: %s", endpoint_id, exc)
            video = []
        self.video.set_sources(endpoint_id, video)
        self._simulcast_ssrcs = {
            layer.ssrc for s in self.video.video_sources() if len(s.layers) > 1 for layer in s.layers
        }
        self._reallocate(now)

    def _svc(self, source: VideoSource) -> VideoSource:
        """``source`` with its spatial layers when it is a VP9 SVC stream."""
        if len(source.layers) != 1 or source.layers[0].ssrc not in self._svc_layers:
            return source
        base = source.layers[0]
        layers = tuple(
            SimulcastLayer(i, base.ssrc, base.rtx_ssrc) for i in range(self._svc_layers[base.ssrc])
        )
        return VideoSource(source.name, source.endpoint, layers, source.forward_ssrc, svc=True)

    def _tick(self, now: float) -> None:
        self._next_decision = now + self.decision_interval
        if self._svc_pending:
            self._take_due_svc_structures(now)
        for endpoint, active in self.connectivity.check(now):
            log.info("endpoint %s: media %s", endpoint, "flowing again" if active else "stopped")
            status = EndpointConnectivityStatusChangeEvent(
                endpoint=endpoint, active="true" if active else "false"
            )
            for other in self.estimators:
                if other != endpoint:
                    self._send(other, status)
        change = self.speakers.decide(now)
        if change is not None:
            event = DominantSpeakerEndpointChangeEvent(
                dominant_speaker_endpoint=change.dominant,
                previous_speakers=list(change.previous_speakers),
                silence=change.silence,
            )
            for endpoint_id in self.estimators:
                self._send(endpoint_id, event)
            self.video.set_speaker_order(self.speakers.speaker_order)
            self._reallocate(now)
        if now >= self._next_allocation:
            self._next_allocation = now + self.allocation_interval
            rates: dict[str, tuple[float, ...]] = {}
            for source in self.video.video_sources():
                measured = self.meter.layer_bitrates(source, now)
                rates[source.name] = smoothed_layer_rates(self._layer_rates.get(source.name), measured)
                self.video.set_layer_info(source.name, self.meter.layer_heights(source), rates[source.name])
            self._layer_rates = rates
            for receiver, sub in self._feedback.items():
                estimator = self.estimators.get(receiver)
                if estimator is None:
                    continue
                media = sub.receiver
                # a receiver report that arrived since the previous tick says what the receiver
                # loses now; the estimate and the probe count each report once
                fresh = media.video_loss_reports != self._reports_read.get(receiver, 0)
                self._reports_read[receiver] = media.video_loss_reports
                send_side = media.send_side
                if send_side is not None and send_side.feedbacks:
                    estimator.on_send_side(send_side.estimate, now)
                if media.remb_bps:
                    estimator.on_remb(media.remb_bps, now)
                    if fresh:
                        estimator.on_loss(media.video_fraction_lost, now)
                self.video.set_bandwidth(receiver, estimator.estimate(now))
                self.video.on_feedback(receiver, now, media.video_fraction_lost / 256 if fresh else None)
                stats = estimator.connection_stats(now)
                if stats is not None:
                    self._send(receiver, stats)
            self._reallocate(now)
            self._ask_keyframes(self.video.pending_keyframes(), now)

    def _reallocate(self, now: float) -> None:
        update = self.video.recompute()
        for endpoint_id, message in update.messages:
            self._send(endpoint_id, message)
        self._ask_keyframes(update.keyframe_requests, now)

    def _ask_keyframes(self, ssrcs: Iterable[int], now: float) -> None:
        if self.request_keyframe is None:
            return
        for ssrc in ssrcs:
            stream = self._streams.get(ssrc)
            if stream is not None:
                self.request_keyframe(stream, now)

    def _send(self, endpoint_id: str, message: BridgeChannelMessage) -> None:
        if self.send_message is not None:
            self.send_message(endpoint_id, message)


def _strip_red(red_payload_types: frozenset[int]) -> Callable[[bytearray], None]:
    def strip(packet: bytearray) -> None:
        if rtp.payload_type(packet) in red_payload_types:
            offset, end = rtp.payload_bounds(packet)
            if offset >= 0:
                red.strip_to_primary(packet, offset, end)

    return strip


def intelligence_policy_factory(
    conference_id: str,
    send_message: SendMessage,
    request_keyframe: RequestKeyframe,
    on_mixing: Callable[[MixMinusMixer | None], None] | None = None,
) -> ConferenceIntelligencePolicy:
    """A :data:`policy.PolicyFactory` for ``MediaEngine(config, policy_factory=...)``;
    ``on_mixing``: see :attr:`ConferenceIntelligencePolicy.on_mixing`."""
    return ConferenceIntelligencePolicy(send_message, request_keyframe, on_mixing=on_mixing)
