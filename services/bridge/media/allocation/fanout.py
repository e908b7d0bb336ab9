"""A stream's fan-out targets: the routes the video policy computed matched to the forwarder's
subscriptions, so the packet path does no lookup per receiver (cf. mediasoup's Router handing
each packet to the Consumers of its Producer).

Per accepted packet a target's subscription follows its projection's mapping
(:class:`~..forwarding.mapping.ForwardingMapping`) by identity: the projection owns it and replaces it at a
switch, so ``sub.mapping is not projection.mapping`` is the whole check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .video_policy import Route

if TYPE_CHECKING:
    from ..forwarding.streams import Subscription


class FanoutTarget:
    """One receiver of a stream as :meth:`ConferenceIntelligencePolicy.select` walks them."""

    __slots__ = ("layer", "projection", "receiver", "subscription")

    def __init__(self, subscription: Subscription, route: Route) -> None:
        self.subscription = subscription
        self.receiver = route.receiver
        self.projection = route.projection
        self.layer = route.layer


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
