"""A stream's fan-out targets: the routes the video policy computed matched to the forwarder's
subscriptions, so the packet path does no lookup per receiver (cf. mediasoup's Router handing
each packet to the Consumers of its Producer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .simulcast import SimulcastProjection
from .video_policy import Route

if TYPE_CHECKING:
    from .forwarder import Subscription


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


def follow(sub: Subscription, projection: SimulcastProjection) -> None:
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
