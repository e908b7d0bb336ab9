"""One conference's video allocation: last-N, constraints, layers and bandwidth for every
receiver (cf. jitsi-videobridge's ``BitrateController``). No I/O.

:class:`ConferenceVideoPolicy` keeps each receiver's :class:`~.settings.ReceiverSettings`, the
sources in speaker order and their measured layers, recomputes on events (a message, a speaker
change, new sources, a new bandwidth estimate, a layer-rate tick) with
:func:`~.allocator.allocate`, and returns what changed: bridge-channel messages to send
(``ForwardedSources`` to receivers, ``SenderSourceConstraints`` to senders) and key frames to ask
for. It owns the per-receiver projection of every source
(:class:`~..forwarding.simulcast.SimulcastProjection`, :class:`~..forwarding.svc.SvcProjection`,
both a :class:`~..forwarding.layers.LayerSwitch`); the forwarding loop reads :attr:`ConferenceVideoPolicy.routes` per packet: one dict lookup by SSRC
gives the receivers of that stream and their projections.

Each receiver has a :class:`~.probing.StepUpProbe`, advanced at every allocation tick with the
receiver's fresh feedback (:meth:`ConferenceVideoPolicy.on_feedback`); it keeps a step beyond the
estimate when the feedback stays clean and reverts it, with exponential back-off, when it does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.common.bridge_channel import (
    BridgeChannelMessage,
    ForwardedSources,
    LastNChangedEvent,
    ReceiverVideoConstraints,
    SenderSourceConstraints,
)

from ..forwarding.simulcast import SimulcastProjection, VideoSource, default_layer_heights
from ..forwarding.svc import SvcProjection
from .allocator import (
    DESKTOP_TYPES,
    ReceiverAllocation,
    SourceLayers,
    allocate,
    constrained_targets,
    max_height_for,
    sender_max_height,
    source_owned_by,
)
from .probing import StepUpProbe
from .settings import UNLIMITED, ReceiverSettings

log = logging.getLogger("parley.bridge.intelligence")

MAX_DESKTOP_SOURCES = 4
"""Screen-share source names remembered per endpoint (a client cannot grow the bridge's state)."""


Projection = SimulcastProjection | SvcProjection


def _projection(source: VideoSource) -> Projection:
    """A receiver's view of ``source``: simulcast layers, or VP9 spatial layers of one stream."""
    return SvcProjection(source) if source.svc else SimulcastProjection(source)


@dataclass(frozen=True)
class Route:
    """One receiver of a stream: the forwarder projects the packet for it and sends."""

    receiver: str
    projection: Projection
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
        self._projections: dict[tuple[str, str], Projection] = {}  # (receiver, source)
        self._allocations: dict[str, ReceiverAllocation] = {}
        self._announced_forwarded: dict[str, list[str]] = {}
        self._announced_sender: dict[str, int] = {}
        self._desktop: dict[str, set[str]] = {}  # endpoint -> its sources it says are screen shares
        self._unreachable: set[str] = set()  # receivers whose media transport is not up
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

    def set_reachable(self, endpoint: str, reachable: bool) -> bool:
        """Whether media can be sent to ``endpoint`` (its transport is up); returns whether that
        changed (then :meth:`recompute`). An unreachable receiver still gets its allocation, but
        asks no sender for anything (``SenderSourceConstraints``): an occupant whose transport
        never comes up (a guest in the room that never answers the focus, a failed ICE) would
        otherwise keep every sender encoding its top layer for nobody, as a receiver that has not
        sent its constraints yet is unlimited. Endpoints are reachable unless told otherwise."""
        if endpoint not in self._receivers or (endpoint not in self._unreachable) == reachable:
            return False
        if reachable:
            self._unreachable.discard(endpoint)
        else:
            self._unreachable.add(endpoint)
        return True

    def remove_endpoint(self, endpoint: str) -> None:
        self._receivers.pop(endpoint, None)
        self._unreachable.discard(endpoint)
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
            if receiver not in self._unreachable:
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
                    projection = self._projections[key] = _projection(by_name[source.name])
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
