"""What to do with one bridge-channel message from an endpoint (no I/O).

* ``ClientHello`` -> a ``ServerHello`` back to the sender.
* ``EndpointMessage`` / ``EndpointStats`` -> relayed with ``from`` set to the sender: to the named
  endpoint (if it is in the conference and is not the sender), or to every other endpoint when
  ``to`` is empty or absent.
* Messages that steer media (last-N, receiver constraints, audio subscription, video type) ->
  handed to the media engine.
* Anything the bridge itself sends (ServerHello, DominantSpeaker..., ForwardedSources...) coming
  from a client is ignored.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from services.common import bridge_channel as bc

MEDIA_CONTROL = (
    bc.LastNChangedEvent,
    bc.ReceiverVideoConstraints,
    bc.ReceiverAudioSubscription,
    bc.SourceVideoTypeMessage,
)


@dataclass
class Routing:
    deliveries: list[tuple[str, bc.BridgeChannelMessage]] = field(default_factory=list)
    to_engine: bc.BridgeChannelMessage | None = None
    """A media-steering message, typed as parsed: the engine's policy takes it as it is."""


def route(message: bc.BridgeChannelMessage, sender: str, endpoints: Collection[str], version: str) -> Routing:
    out = Routing()
    if isinstance(message, bc.ClientHello):
        out.deliveries.append((sender, bc.ServerHello(version=version)))
    elif isinstance(message, bc.EndpointMessage | bc.EndpointStats):
        relayed = message.model_copy(update={"from_endpoint": sender})
        if message.to:
            if message.to != sender and message.to in endpoints:
                out.deliveries.append((message.to, relayed))
        else:
            out.deliveries.extend((ep, relayed) for ep in endpoints if ep != sender)
    elif isinstance(message, MEDIA_CONTROL):
        out.to_engine = message
    return out
