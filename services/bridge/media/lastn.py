"""Which video each receiver gets: last-N, receiver video constraints, bandwidth. No I/O.

Two levels:

* :func:`allocate` is the pure decision for one receiver: given the conference's video sources in
  speaker order (:class:`SourceLayers`: layer heights and measured bitrates), the receiver's
  :class:`ReceiverSettings` (Colibri ``last-n``, ``LastNChangedEvent``, ``ReceiverVideoConstraints``)
  and its bandwidth estimate, it picks the sources to forward and a layer for each.
* :class:`ConferenceVideoPolicy` keeps that state for a whole conference, recomputes on events
  (a message, a speaker change, new sources, a new bandwidth estimate, a layer-rate tick) and
  returns what changed: bridge-channel messages to send (``ForwardedSources`` to receivers,
  ``SenderSourceConstraints`` to senders) and the per-receiver :class:`SimulcastProjection`
  targets. The forwarding loop reads :meth:`ConferenceVideoPolicy.routes` per packet: one dict
  lookup by SSRC gives the receivers of that stream and their projections.

:class:`ConferenceIntelligencePolicy` is the adapter to the forwarder: it fills the forwarding
policy seam (``policy.py``) with the cores of this package -- speaker detection, this allocation,
simulcast projections and bandwidth estimates -- and is built per conference by
:func:`intelligence_policy_factory` (``MediaEngine(config, policy_factory=...)``).

Order of preference for a receiver: on-stage sources, then screen shares (sources whose sender said
``videoType`` desktop with ``SourceVideoTypeMessage``), then selected sources, then everyone else
by speaker order (dominant speaker first). A screen share is never dropped by last-N (it is not
counted) and, unless the receiver constrains that source by name, gets its highest layer: text on
a shared screen needs its full resolution, a low frame rate is acceptable. The effective last-N is the smallest non-negative value of
the Colibri ``last-n`` and the receiver's own ``lastN`` (-1 = unlimited); a source constrained to
``maxHeight`` 0 is neither forwarded nor counted. Bandwidth is shared greedily in preference
order: every chosen source gets its lowest layer, then each is raised, in the same order, as high
as its constraint and the remaining budget allow, skipping layers the sender does not send (0 bps
while another layer of the source is measured: Chrome stops simulcast layers on its own).
Bandwidth never drops a source: a REMB-based estimate follows what the receiver gets, so a source
dropped for bandwidth would never come back.

For the same reason a receiver held on low layers by its estimate would stay there: the bridge
sends no padding probes (jitsi-videobridge's BandwidthProbing), it probes with media. Each
receiver has a :class:`~.probing.StepUpProbe`, advanced at every allocation tick with the
receiver's fresh feedback (:meth:`ConferenceVideoPolicy.on_feedback`): while the allocation is
bandwidth-limited (:attr:`ReceiverAllocation.step_up`) and the receiver's reports are clean, it
lets one source go one layer beyond the budget (``floors`` of :func:`allocate`), keeps the step
when the feedback stays clean and reverts it, with exponential back-off, when it does not.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.common import bridge_channel
from services.common.bridge_channel import (
    BridgeChannelMessage,
    DominantSpeakerEndpointChangeEvent,
    EndpointConnectivityStatusChangeEvent,
    ForwardedSources,
    LastNChangedEvent,
    ReceiverAudioSubscription,
    ReceiverVideoConstraints,
    SenderSourceConstraints,
    SourceVideoTypeMessage,
)

from . import rtp
from .bandwidth import DownlinkEstimator
from .connectivity import ConnectivityMonitor
from .mixer import MixedRtpStream, MixerThread, MixMinusMixer
from .model import MediaSources
from .policy import ForwardingPolicy, SendMessage
from .probing import StepUpProbe
from .simulcast import (
    LayerMeter,
    SimulcastProjection,
    VideoSource,
    audio_source_name,
    default_layer_heights,
    highest_layer_within,
    parse_packet,
    video_sources,
)
from .speaker import DominantSpeakerDetector, SpeakerDetectorSettings
from .vp8 import is_keyframe_start

if TYPE_CHECKING:
    from .forwarder import EndpointMedia, IncomingStream, Subscription

log = logging.getLogger("parley.bridge.intelligence")

UNLIMITED = -1
MAX_DESKTOP_SOURCES = 4
"""Screen-share source names remembered per endpoint (a client cannot grow the bridge's state)."""


@dataclass
class ReceiverSettings:
    """What one receiver asked for. ``max_height`` values: -1 = no limit, 0 = nothing."""

    colibri_last_n: int = UNLIMITED
    last_n: int = UNLIMITED
    selected: tuple[str, ...] = ()
    on_stage: tuple[str, ...] = ()
    default_max_height: int = UNLIMITED
    max_heights: dict[str, int] = field(default_factory=dict)
    bandwidth_bps: float | None = None
    """Estimated downlink; ``None`` while unknown (then bandwidth does not limit)."""

    @property
    def effective_last_n(self) -> int:
        limits = [n for n in (self.colibri_last_n, self.last_n) if n >= 0]
        return min(limits) if limits else UNLIMITED

    def max_height_of(self, source: str) -> int:
        return self.max_heights.get(source, self.default_max_height)

    def apply(self, message: LastNChangedEvent | ReceiverVideoConstraints) -> None:
        """Apply a bridge-channel message; fields a ReceiverVideoConstraints leaves out keep
        their previous value, as jitsi-videobridge does."""
        if isinstance(message, LastNChangedEvent):
            self.last_n = message.last_n
            return
        if message.last_n is not None:
            self.last_n = message.last_n
        if message.selected_sources is not None:
            self.selected = tuple(message.selected_sources)
        if message.on_stage_sources is not None:
            self.on_stage = tuple(message.on_stage_sources)
        if message.default_constraints is not None:
            self.default_max_height = _height(message.default_constraints.max_height)
        if message.constraints is not None:
            self.max_heights = {name: _height(c.max_height) for name, c in message.constraints.items()}


def _height(value: int | None) -> int:
    return UNLIMITED if value is None else value


@dataclass(frozen=True)
class SourceLayers:
    """A video source as the allocator sees it: layer heights (low to high) and each layer's
    measured bitrate in bps (0 = not measured yet, counted as free)."""

    name: str
    endpoint: str
    heights: tuple[int, ...]
    bitrates: tuple[float, ...]
    desktop: bool = False
    """A screen share (``SourceVideoTypeMessage`` desktop): preferred, outside last-N."""


DESKTOP_TYPES = frozenset({"desktop", "desktop_high_fps"})


def source_owned_by(endpoint: str, source: str) -> bool:
    """Whether ``source`` is one of ``endpoint``'s video source names (``<endpoint>-v<n>``)."""
    prefix = f"{endpoint}-v"
    return source.startswith(prefix) and source[len(prefix) :].isdigit()


@dataclass(frozen=True)
class ReceiverAllocation:
    """The layer each forwarded source is sent at (index into its layers), in preference order."""

    layers: dict[str, int]
    within_budget: dict[str, int] = field(default_factory=dict, compare=False)
    """The layer each source whose layers are measured gets from the bandwidth budget alone
    (without probe steps); unmeasured sources cost nothing and are not listed."""
    step_up: tuple[str, int] | None = field(default=None, compare=False)
    """The next step a probe would try: the first source in preference order below the highest
    layer its constraint allows (and its sender sends), and the layer above the one it gets.
    ``None`` when nothing is held back by bandwidth."""

    @property
    def forwarded(self) -> list[str]:
        return list(self.layers)


def preference_order(
    receiver: str, settings: ReceiverSettings, sources: Sequence[SourceLayers]
) -> list[SourceLayers]:
    """Other endpoints' sources: on-stage first, then screen shares, then selected, then the
    given (speaker) order."""
    others = [s for s in sources if s.endpoint != receiver]
    by_name = {s.name: s for s in others}
    ordered: list[SourceLayers] = []
    seen: set[str] = set()
    desktop = tuple(s.name for s in others if s.desktop)
    for name in (*settings.on_stage, *desktop, *settings.selected):
        if name in by_name and name not in seen:
            ordered.append(by_name[name])
            seen.add(name)
    ordered.extend(s for s in others if s.name not in seen)
    return ordered


def constrained_targets(
    receiver: str, settings: ReceiverSettings, sources: Sequence[SourceLayers]
) -> list[tuple[SourceLayers, int]]:
    """The last-N sources the receiver wants, in preference order, each with the highest layer
    its constraint allows (bandwidth not considered). Screen shares are not counted by last-N."""
    last_n = settings.effective_last_n
    chosen: list[tuple[SourceLayers, int]] = []
    counted = 0
    for source in preference_order(receiver, settings, sources):
        if not source.desktop and last_n >= 0 and counted >= last_n:
            continue
        target = highest_layer_within(source.heights, max_height_for(settings, source))
        if target >= 0:
            chosen.append((source, target))
            if not source.desktop:
                counted += 1
    return chosen


def max_height_for(settings: ReceiverSettings, source: SourceLayers) -> int:
    """A source's height limit for a receiver. A screen share's is its own constraint when the
    receiver names it, else unlimited -- unless the receiver takes no video by default
    (audio-only: 0)."""
    if not source.desktop or source.name in settings.max_heights:
        return settings.max_height_of(source.name)
    return 0 if settings.default_max_height == 0 else UNLIMITED


def allocate(
    receiver: str,
    settings: ReceiverSettings,
    sources: Sequence[SourceLayers],
    floors: Mapping[str, int] | None = None,
) -> ReceiverAllocation:
    """Sources and layers for ``receiver``; ``sources`` in speaker order. ``floors`` (source
    name -> layer, from :class:`~.probing.StepUpProbe`) are layers a source gets at least,
    beyond the budget (capped by its constraint and by the layers its sender sends)."""
    chosen = constrained_targets(receiver, settings, sources)
    budget = float("inf") if settings.bandwidth_bps is None else settings.bandwidth_bps
    layers: dict[str, int] = {}
    within_budget: dict[str, int] = {}
    step_up: tuple[str, int] | None = None
    for source, _ in chosen:  # every chosen source gets its lowest layer, whatever it costs
        budget -= source.bitrates[0]
        layers[source.name] = 0
    for source, target in chosen:  # then raise each, in preference order, while it fits
        # once a source's layers are measured, one reading 0 bps is not being sent (the sender
        # stopped it for its own bandwidth or CPU, or for SenderSourceConstraints): skip it
        bitrates = source.bitrates
        measured = any(rate > 0 for rate in bitrates)
        sendable = [c for c in range(1, target + 1) if not measured or bitrates[c] > 0]
        layer = 0
        for candidate in sendable:
            step = bitrates[candidate] - bitrates[layer]
            if step > budget:
                break
            budget -= step
            layer = candidate
        if measured:
            within_budget[source.name] = layer
        floor = floors.get(source.name, 0) if floors else 0
        held = max(layer, max((c for c in sendable if c <= floor), default=0))
        layers[source.name] = held
        if step_up is None:
            above = next((c for c in sendable if c > held), None)
            if above is not None:
                step_up = (source.name, above)
    return ReceiverAllocation(layers, within_budget, step_up)


RATE_SMOOTHING = 0.3


def smoothed_layer_rates(
    previous: Sequence[float] | None, measured: Sequence[float], weight: float = RATE_SMOOTHING
) -> tuple[float, ...]:
    """A source's layer bitrates for the allocator, from the previous ones and a new reading
    (one short meter window, which a key frame doubles): each layer moves ``weight`` of the way
    to the reading. A layer reading 0 while another is measured has stopped and reads 0 at once;
    a reading of nothing at all (no packet of the source for a moment: a stalled sender) keeps
    the previous rates, which would otherwise read as unmeasured, that is free."""
    if previous is None or len(previous) != len(measured) or not any(previous):
        return tuple(measured)
    if not any(measured):
        return tuple(previous)
    return tuple(
        0.0 if new <= 0 else new if old <= 0 else old + weight * (new - old)
        for old, new in zip(previous, measured, strict=True)
    )


def sender_max_height(source: SourceLayers, wanted: Iterable[int]) -> int:
    """What ``SenderSourceConstraints`` tells the sender: -1 if a receiver wants it unlimited,
    else the largest height asked for, 0 when nobody receives it."""
    best = 0
    for height in wanted:
        if height < 0:
            return UNLIMITED
        best = max(best, height)
    return best


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


@dataclass(frozen=True)
class Route:
    """One receiver of a stream: the forwarder projects the packet for it and sends."""

    receiver: str
    projection: SimulcastProjection
    layer: int
    """The layer the packet's SSRC carries."""


@dataclass
class PolicyUpdate:
    """What a recomputation changed."""

    messages: list[tuple[str, BridgeChannelMessage]] = field(default_factory=list)
    """(endpoint, message) to deliver on the bridge channel."""
    keyframe_requests: set[int] = field(default_factory=set)
    """Sender SSRCs that need a key frame (PLI) because a receiver switches to them."""


class ConferenceVideoPolicy:
    """Last-N, constraints, simulcast layer choice and bandwidth for one conference."""

    def __init__(
        self,
        default_max_height: int = UNLIMITED,
        probe_factory: Callable[[], StepUpProbe] = StepUpProbe,
    ) -> None:
        self.default_max_height = default_max_height
        self._probe_factory = probe_factory
        self._probes: dict[str, StepUpProbe] = {}  # receiver -> its upward probing
        self._sources: dict[str, list[VideoSource]] = {}  # endpoint -> its video sources
        self._heights: dict[str, tuple[int, ...]] = {}
        self._bitrates: dict[str, tuple[float, ...]] = {}
        self._receivers: dict[str, ReceiverSettings] = {}
        self._speaker_order: list[str] = []
        self._projections: dict[tuple[str, str], SimulcastProjection] = {}  # (receiver, source)
        self._allocations: dict[str, ReceiverAllocation] = {}
        self._announced_forwarded: dict[str, list[str]] = {}
        self._announced_sender: dict[str, int] = {}
        self._desktop: dict[str, set[str]] = {}  # endpoint -> its sources it says are screen shares
        self.routes: dict[int, dict[str, Route]] = {}
        """SSRC -> {receiver: route} for that stream, rebuilt on every recomputation."""

    # --- events -------------------------------------------------------------------------------
    def add_endpoint(self, endpoint: str, colibri_last_n: int = UNLIMITED) -> None:
        if endpoint not in self._receivers:
            self._receivers[endpoint] = ReceiverSettings(default_max_height=self.default_max_height)
            self._probes[endpoint] = self._probe_factory()
        self._receivers[endpoint].colibri_last_n = colibri_last_n
        if endpoint not in self._speaker_order:
            self._speaker_order.append(endpoint)

    def remove_endpoint(self, endpoint: str) -> None:
        self._receivers.pop(endpoint, None)
        self._probes.pop(endpoint, None)
        self._desktop.pop(endpoint, None)
        gone = {source.name for source in self._sources.pop(endpoint, [])}
        for name in gone:
            self._heights.pop(name, None)
            self._bitrates.pop(name, None)
            self._announced_sender.pop(name, None)
        self._announced_forwarded.pop(endpoint, None)
        self._allocations.pop(endpoint, None)
        self._projections = {
            k: p for k, p in self._projections.items() if k[0] != endpoint and k[1] not in gone
        }
        if endpoint in self._speaker_order:
            self._speaker_order.remove(endpoint)

    def set_sources(self, endpoint: str, sources: list[VideoSource]) -> None:
        """The endpoint's video sources (from ``simulcast.video_sources``); replaces the old."""
        if endpoint not in self._receivers:
            self.add_endpoint(endpoint)
        old = {s.name: s for s in self._sources.get(endpoint, [])}
        self._sources[endpoint] = sources
        for source in sources:
            if old.get(source.name) != source:
                self._heights[source.name] = tuple(default_layer_heights(len(source.layers)))
                self._bitrates[source.name] = (0.0,) * len(source.layers)
                self._projections = {k: p for k, p in self._projections.items() if k[1] != source.name}
        for name in set(old) - {s.name for s in sources}:
            self._heights.pop(name, None)
            self._bitrates.pop(name, None)
            self._announced_sender.pop(name, None)
            self._projections = {k: p for k, p in self._projections.items() if k[1] != name}

    def set_colibri_last_n(self, endpoint: str, last_n: int) -> None:
        self.add_endpoint(endpoint, last_n)

    def set_video_type(self, endpoint: str, source: str, video_type: str) -> bool:
        """``SourceVideoTypeMessage`` from ``endpoint``: whether ``source`` is a screen share.
        Only the endpoint's own sources (``<endpoint>-v<n>``) are taken; returns whether that
        changed anything (then :meth:`recompute`). Kept for a source announced later."""
        if not source_owned_by(endpoint, source) or endpoint not in self._receivers:
            return False
        desktop = self._desktop.setdefault(endpoint, set())
        if (video_type in DESKTOP_TYPES) == (source in desktop):
            return False
        if video_type in DESKTOP_TYPES:
            if len(desktop) >= MAX_DESKTOP_SOURCES:
                return False
            desktop.add(source)
        else:
            desktop.discard(source)
        return True

    def is_desktop(self, source: str) -> bool:
        return any(source in names for names in self._desktop.values())

    def on_message(self, endpoint: str, message: LastNChangedEvent | ReceiverVideoConstraints) -> None:
        self._settings(endpoint).apply(message)

    def set_speaker_order(self, order: Sequence[str]) -> None:
        """Endpoints by recency of speaking (dominant first); unknown ones are kept at the end."""
        known = [ep for ep in order if ep in self._receivers]
        self._speaker_order = known + [ep for ep in self._speaker_order if ep not in known]

    def set_bandwidth(self, endpoint: str, bps: float | None) -> None:
        self._settings(endpoint).bandwidth_bps = bps

    def on_feedback(self, endpoint: str, now: float, loss: float | None) -> bool:
        """An allocation tick's feedback from ``endpoint`` (after :meth:`set_bandwidth`): ``loss``
        is the fraction lost of a report received since the previous tick, ``None`` without
        one. Advances the receiver's :class:`StepUpProbe`; returns whether its steps changed
        (then :meth:`recompute`)."""
        settings = self._settings(endpoint)
        probe = self._probes[endpoint]
        allocation = allocate(endpoint, settings, self._source_layers(), probe.floors)
        changed = probe.on_feedback(now, settings.bandwidth_bps, loss, allocation)
        if changed:
            log.debug("receiver %s: steps beyond its estimate now %s", endpoint, probe.floors)
        return changed

    def probe(self, endpoint: str) -> StepUpProbe:
        return self._probes[endpoint]

    def set_layer_info(self, source: str, heights: Sequence[int], bitrates: Sequence[float]) -> None:
        """Measured heights (learned from key frames) and bitrates of a source's layers."""
        if source in self._heights:
            self._heights[source] = tuple(heights)
            self._bitrates[source] = tuple(bitrates)

    def settings(self, endpoint: str) -> ReceiverSettings:
        return self._settings(endpoint)

    def allocation(self, endpoint: str) -> ReceiverAllocation:
        return self._allocations.get(endpoint, ReceiverAllocation({}))

    def video_sources(self) -> list[VideoSource]:
        return [s for ep in self._speaker_order for s in self._sources.get(ep, [])]

    def _settings(self, endpoint: str) -> ReceiverSettings:
        if endpoint not in self._receivers:
            self.add_endpoint(endpoint)
        return self._receivers[endpoint]

    # --- decision -----------------------------------------------------------------------------
    def recompute(self) -> PolicyUpdate:
        """Re-run the allocation for every receiver; returns the messages and key-frame
        requests the changes call for, and rebuilds :attr:`routes`."""
        update = PolicyUpdate()
        ordered = self._source_layers()
        by_name = {s.name: s for ep in self._sources for s in self._sources[ep]}
        wanted: dict[str, list[int]] = {s.name: [] for s in ordered}
        for receiver, settings in self._receivers.items():
            allocation = allocate(receiver, settings, ordered, self._probes[receiver].floors)
            self._allocations[receiver] = allocation
            for source, _ in constrained_targets(receiver, settings, ordered):
                wanted[source.name].append(max_height_for(settings, source))
            forwarded = allocation.forwarded
            if self._announced_forwarded.get(receiver) != forwarded:
                self._announced_forwarded[receiver] = forwarded
                update.messages.append((receiver, ForwardedSources(forwarded_sources=forwarded)))
            for source in (s for s in ordered if s.endpoint != receiver):
                layer = allocation.layers.get(source.name, -1)
                key = (receiver, source.name)
                projection = self._projections.get(key)
                if projection is None:
                    if layer < 0:
                        continue
                    projection = self._projections[key] = SimulcastProjection(by_name[source.name])
                if projection.target != layer:
                    newly_forwarded = projection.target < 0 <= layer
                    if projection.set_target(layer) or newly_forwarded:
                        # a receiver that starts (or switches) a stream needs a key frame
                        update.keyframe_requests.add(by_name[source.name].layers[layer].ssrc)
        for source in ordered:
            height = sender_max_height(source, wanted[source.name])
            if self._announced_sender.get(source.name) != height:
                self._announced_sender[source.name] = height
                update.messages.append(
                    (source.endpoint, SenderSourceConstraints(source_name=source.name, max_height=height))
                )
        self._rebuild_routes(by_name)
        return update

    def _source_layers(self) -> list[SourceLayers]:
        return [
            SourceLayers(
                s.name,
                s.endpoint,
                self._heights[s.name],
                self._bitrates[s.name],
                s.name in self._desktop.get(s.endpoint, ()),
            )
            for s in self.video_sources()
        ]

    def pending_keyframes(self) -> set[int]:
        """SSRCs some receiver still waits on for a key frame (re-send PLIs for these)."""
        return {p.keyframe_wanted for p in self._projections.values() if p.keyframe_wanted is not None}

    def _rebuild_routes(self, by_name: dict[str, VideoSource]) -> None:
        routes: dict[int, dict[str, Route]] = {}
        for (receiver, name), projection in self._projections.items():
            if projection.target < 0 and projection.current < 0:
                continue
            for layer in by_name[name].layers:
                if layer.index not in (projection.target, projection.current):
                    continue
                routes.setdefault(layer.ssrc, {})[receiver] = Route(receiver, projection, layer.index)
        self.routes = routes


class FanoutTarget:
    """One receiver of a stream as :meth:`ConferenceIntelligencePolicy.select` walks them."""

    __slots__ = ("layer", "projection", "receiver", "subscription", "switches")

    def __init__(self, subscription: Subscription, route: Route) -> None:
        self.subscription = subscription
        self.receiver = route.receiver
        self.projection = route.projection
        self.layer = route.layer
        self.switches = -1
        """The projection's switch count when the subscription last followed its mapping: the
        SSRC and offsets change only at a switch, so while it is the same there is nothing to do."""


class StreamFanout:
    """A stream's routes matched to its subscriptions, in subscription order: built when either
    changes (a recomputation makes new routes, the forwarder a new subscription list -- it
    replaces a stream's list, never changes it in place), so the packet path does no lookup per
    receiver."""

    __slots__ = ("routes", "subscriptions", "targets")

    def __init__(self, routes: dict[str, Route], subscriptions: Sequence[Subscription]) -> None:
        self.routes = routes
        self.subscriptions = subscriptions
        self.targets = [
            FanoutTarget(sub, route)
            for sub in subscriptions
            if (route := routes.get(sub.receiver.id)) is not None
        ]


def _follow(sub: Subscription, projection: SimulcastProjection) -> None:
    """Remap ``sub`` to what ``projection`` makes of the stream, when that differs."""
    out_ssrc = projection.out_ssrc
    seq_offset = projection.seq_offset
    ts_offset = projection.ts_offset
    rewrites_payload = projection.rewrites_payload
    if (
        sub.out_ssrc != out_ssrc
        or sub.seq_delta != seq_offset
        or sub.ts_delta != ts_offset
        or (sub.payload_rewrite is not None) != rewrites_payload
    ):
        sub.remap(out_ssrc, seq_offset, ts_offset, projection.rewrite_payload if rewrites_payload else None)


class ConferenceIntelligencePolicy(ForwardingPolicy):
    """The forwarder's policy seam (``policy.py``) filled with this package's cores.

    * audio levels -> :class:`DominantSpeakerDetector`; a new dominant speaker is announced to
      every endpoint (``DominantSpeakerEndpointChangeEvent``) and reorders last-N;
    * ``LastNChangedEvent`` / ``ReceiverVideoConstraints`` / Colibri ``last-n`` and each
      receiver's REMB and receiver-report loss (kept on its ``EndpointMedia``, read every
      ``allocation_interval``) -> :class:`ConferenceVideoPolicy` (estimate and upward probe),
      whose changes go out as ``ForwardedSources``, ``SenderSourceConstraints`` and
      ``ConnectionStats``;
    * per video packet, :meth:`select` keeps the subscriptions whose receiver's projection
      accepts it and remaps their SSRC/sequence/timestamp to the projection's;
    * per audio packet, when some endpoint has a mixer channel (:meth:`set_audio_mixing`), the
      Opus payload goes to the :class:`MixMinusMixer` and mixer channels are left out; the
      mixer thread's output comes back to the event loop and is sent as RTP on each mixer
      receiver's own SSRC.

    Work per packet is a dict lookup and one :meth:`SimulcastProjection.accept` per receiver
    (the stream's routes matched to its subscriptions are kept in a :class:`StreamFanout`);
    speaker decisions run every ``decision_interval`` and reallocation every
    ``allocation_interval`` (and on every message), driven by the packets' own clock.

    Key frames for streams a receiver starts, or waits to switch to, are asked for through
    ``request_keyframe``, which the forwarder sets on its policy.
    """

    def __init__(
        self,
        send_message: SendMessage | None = None,
        *,
        default_max_height: int = UNLIMITED,
        decision_interval: float = 0.3,
        allocation_interval: float = 1.0,
        speaker_settings: SpeakerDetectorSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        mixer_thread: bool = True,
    ) -> None:
        super().__init__(send_message)
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
        self._streams: dict[int, IncomingStream] = {}
        self._fanouts: dict[int, StreamFanout] = {}  # by stream SSRC
        self._feedback: dict[str, Subscription] = {}  # receiver -> its latest forwarded video subscription
        self._reports_read: dict[str, int] = {}  # receiver -> its video_loss_reports at the last tick
        self._layer_rates: dict[str, tuple[float, ...]] = {}  # source -> smoothed layer bitrates
        self._next_decision = float("-inf")
        self._next_allocation = float("-inf")
        # audio mixing for "rtp-level-relay-type": "mixer" channels (created on first use)
        self.mixer: MixMinusMixer | None = None
        self._mixer_thread_wanted = mixer_thread
        self._mixer_thread: MixerThread | None = None
        self._mixed: dict[str, MixedRtpStream] = {}  # mixer receiver -> its mixed stream
        self._media: dict[str, EndpointMedia] = {}  # endpoint -> where to send its mix
        self._audio_subscriptions: dict[str, AudioSubscription] = {}  # only receivers not taking all

    # --- membership and control ---------------------------------------------------------------
    def on_endpoint_added(self, endpoint_id: str) -> None:
        self.video.add_endpoint(endpoint_id)
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
        self._feedback.pop(endpoint_id, None)
        self._reports_read.pop(endpoint_id, None)
        self._streams = {ssrc: s for ssrc, s in self._streams.items() if s.endpoint_id != endpoint_id}
        self._fanouts = {ssrc: f for ssrc, f in self._fanouts.items() if ssrc in self._streams}
        self._reallocate(self._clock())

    def on_channel_open(self, endpoint_id: str) -> None:
        """``endpoint_id``'s bridge channel opened: tell it who is interrupted now (it missed the
        change events)."""
        for other, active in self.connectivity.status_for_new_channel(endpoint_id):
            self._send(
                endpoint_id,
                EndpointConnectivityStatusChangeEvent(endpoint=other, active="true" if active else "false"),
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
                if not self._mixed:
                    self.close()
            return None
        if self.mixer is None:
            self.mixer = MixMinusMixer()
        stream = self._mixed.get(endpoint_id)
        if stream is None:
            stream = self._mixed[endpoint_id] = MixedRtpStream(
                secrets.randbits(32) or 1, seq=secrets.randbits(16), timestamp=secrets.randbits(32)
            )
            self.mixer.add_receiver(endpoint_id)
        if self._mixer_thread_wanted and self._mixer_thread is None:
            loop = asyncio.get_running_loop()

            def deliver(out: list[tuple[str, bytes]]) -> None:  # on the mixer thread
                loop.call_soon_threadsafe(self._send_mixed, out)

            self._mixer_thread = MixerThread(self.mixer, deliver)
            self._mixer_thread.start()
        return stream.ssrc

    def mix_once(self) -> None:
        """One 20 ms mixing tick on the caller's thread (what the mixer thread does)."""
        if self.mixer is not None:
            self._send_mixed(self.mixer.mix())

    def close(self) -> None:
        """Stop the mixer thread (the conference is going away or mixes for nobody)."""
        if self._mixer_thread is not None:
            self._mixer_thread.stop()
            self._mixer_thread = None

    def _send_mixed(self, out: list[tuple[str, bytes]]) -> None:
        for receiver, payload in out:
            stream = self._mixed.get(receiver)
            media = self._media.get(receiver)
            if stream is not None and media is not None and media.connected:
                media.send_rtp(stream.packet(payload))

    def on_message(self, endpoint_id: str, message: dict[str, Any]) -> None:
        try:
            parsed = bridge_channel.parse(message)
        except bridge_channel.BridgeChannelError as exc:
            log.warning("bad bridge-channel message from %s ignored: %s", endpoint_id, exc)
            return
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
    def observe_audio_level(self, stream: IncomingStream, level: int, voice: bool, now: float) -> None:
        self.speakers.observe(stream.endpoint_id, level, now)
        if now >= self._next_decision:
            self._tick(now)

    def select(
        self, stream: IncomingStream, packet: bytes, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        now = self._clock()
        self.connectivity.on_media(stream.endpoint_id, now)
        if stream.kind != "video":
            if self.mixer is not None:
                subscriptions = self._mix_audio(stream, packet, subscriptions)
            if self._audio_subscriptions:
                source = audio_source_name(stream.endpoint_id)
                subscriptions = [
                    sub
                    for sub in subscriptions
                    if sub.receiver.id not in self._audio_subscriptions
                    or self._audio_subscriptions[sub.receiver.id].wants(source)
                ]
            return subscriptions
        sender = stream.sender
        if self._known_sources.get(sender.id) is not sender.sources:
            self._learn_sources(sender.id, sender.sources, now)
        ssrc = stream.ssrc
        self.meter.on_packet(ssrc, len(packet), now)
        parsed = parse_packet(packet, rtp.payload_type(packet) in self._vp8_payload_types.get(sender.id, ()))
        if ssrc in self._simulcast_ssrcs:
            # learn layer heights from key frames (the first packet of a frame may start one)
            desc = parsed.vp8
            if desc is not None and desc.start_of_frame:
                offset, end = parsed.payload_offset, parsed.end
                if is_keyframe_start(packet, offset, end):
                    self.meter.on_keyframe(ssrc, packet, offset, end)
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
            if target.switches != projection.switches:  # the mapping may have changed
                target.switches = projection.switches
                _follow(sub, projection)
            # the receiver's REMB and loss are read from a subscription it is being sent now
            feedback[target.receiver] = sub
            selected.append(sub)
        return selected

    def _mix_audio(
        self, stream: IncomingStream, packet: bytes, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        """Hand the Opus payload to the mixer; mixer channels do not get the stream itself."""
        assert self.mixer is not None
        offset, end = rtp.payload_bounds(packet)
        if offset >= 0:
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
        self._vp8_payload_types[endpoint_id] = frozenset(
            pt.id for pt in sources.payload_types if pt.name.lower() == "vp8"
        )
        try:
            video = video_sources(endpoint_id, sources)
        except ValueError as exc:
            log.warning("endpoint %s: video sources ignored: %s", endpoint_id, exc)
            video = []
        self.video.set_sources(endpoint_id, video)
        self._simulcast_ssrcs = {
            layer.ssrc for s in self.video.video_sources() if len(s.layers) > 1 for layer in s.layers
        }
        self._reallocate(now)

    def _tick(self, now: float) -> None:
        self._next_decision = now + self.decision_interval
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
                measured = [self.meter.bitrate(ssrc, now) for ssrc in source.ssrcs]
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
            self.send_message(endpoint_id, bridge_channel.to_dict(message))


def intelligence_policy_factory(
    conference_id: str, send_message: SendMessage
) -> ConferenceIntelligencePolicy:
    """A :data:`policy.PolicyFactory` for ``MediaEngine(config, policy_factory=...)``."""
    return ConferenceIntelligencePolicy(send_message)
