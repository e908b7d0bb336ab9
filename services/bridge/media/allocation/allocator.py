"""The allocator: which video sources one receiver gets, and at which layer. No I/O.

cf. jitsi-videobridge's ``cc/allocation``: :func:`preference_order` is its ``Prioritize``,
:func:`allocate` its ``BandwidthAllocator`` over one ``SingleSourceAllocation`` per source
(:class:`SourceLayers`), reading the receiver's :class:`~.settings.ReceiverSettings`.

Order of preference for a receiver: on-stage sources, then screen shares (sources whose sender said
``videoType`` desktop with ``SourceVideoTypeMessage``), then selected sources, then everyone else
by speaker order (dominant speaker first). A screen share is never dropped by last-N (it is not
counted) and, unless the receiver constrains that source by name, gets its highest layer: text on
a shared screen needs its full resolution, a low frame rate is acceptable. The effective last-N is
the smallest non-negative value of the Colibri ``last-n`` and the receiver's own ``lastN`` (-1 =
unlimited); a source constrained to ``maxHeight`` 0 is neither forwarded nor counted. Bandwidth is
shared greedily in preference order: every chosen source gets its lowest layer, then each is
raised, in the same order, as high as its constraint and the remaining budget allow, skipping
layers the sender does not send (0 bps while another layer of the source is measured: Chrome
stops simulcast layers on its own). Bandwidth never drops a source: a REMB-based estimate follows
what the receiver gets, so a source dropped for bandwidth would never come back.

For the same reason a receiver held on low layers by its estimate would stay there: the bridge
sends no padding probes (jitsi-videobridge's BandwidthProbing), it probes with media. ``floors``
of :func:`allocate` come from the receiver's :class:`~.probing.StepUpProbe`: while the
allocation is bandwidth-limited (:attr:`ReceiverAllocation.step_up`) and the receiver's reports
are clean, it lets one source go one layer beyond the budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..forwarding.simulcast import highest_layer_within
from .settings import UNLIMITED, ReceiverSettings


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
