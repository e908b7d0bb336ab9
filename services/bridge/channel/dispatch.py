"""One bridge channel per endpoint, over whichever transport the endpoint has.

:class:`BridgeChannels` is transport-independent: a transport hands it every message an endpoint
sent (:meth:`BridgeChannels.receive`) and tells it when an endpoint's channel opened
(:meth:`BridgeChannels.opened`); the rest of the bridge sends with :meth:`BridgeChannels.send`.
A message from an endpoint is routed by :func:`.routing.route` whatever carried it: relayed
messages reach the other endpoints over *their* transports, media-steering messages go to the
media engine. A message to an endpoint takes the transport the endpoint used last (the one it
sent on most recently, or a WebSocket that just connected) and falls back to any other transport
that is open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Protocol

from services.common import bridge_channel as bc
from services.common.logging import RateLimitedLogger
from services.common.token_bucket import TokenBucket

from .routing import route

log = logging.getLogger("bridge.channel")

ERROR_INTERVAL = 1.0
"""At most one ``Error`` message a second to an endpoint (a client cannot make the bridge amplify)."""

RELAY_BYTES_PER_SECOND = 32 * 1024
RELAY_BURST_BYTES = 128 * 1024
"""Each endpoint's budget of relayed messages (``EndpointMessage``, ``EndpointStats``), counted in
bytes as received. The bridge sends each one to every other endpoint, so without a budget one
guest flooding 64 KB broadcasts filled every receiver's WebSocket queue until the bridge cut the
slower ones off (``max-queued-bytes``). Chat lines, reactions, polls and statistics are a few
hundred bytes each; a message over the budget is dropped and the sender told (``Error``)."""


class ChannelTransport(Protocol):
    """A way to reach endpoints (the Colibri WebSocket, SCTP data channels)."""

    name: str

    def send_text(self, conference_id: str, endpoint_id: str, text: str) -> bool:
        """Queue one message; False when this transport has no open channel to the endpoint."""
        ...


class BridgeChannels:
    def __init__(
        self,
        *,
        endpoints_of: Callable[[str], Collection[str]],
        to_engine: Callable[[str, str, bc.BridgeChannelMessage], None],
        version: str,
        max_message_bytes: int = bc.MAX_MESSAGE_BYTES,
        max_depth: int = bc.MAX_DEPTH,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[str, str], None] | None = None,
        relay_bytes_per_second: float = RELAY_BYTES_PER_SECOND,
        relay_burst_bytes: float = RELAY_BURST_BYTES,
    ) -> None:
        self.endpoints_of = endpoints_of
        # (conference, endpoint) whose channel just opened: the state it missed is sent to it
        self.on_open = on_open
        self.to_engine = to_engine
        self.version = version
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self.clock = clock
        self.transports: dict[str, ChannelTransport] = {}
        self._preferred: dict[tuple[str, str], str] = {}
        self._last_error: dict[tuple[str, str], float] = {}
        self.refused = 0
        self.relay_rate, self.relay_burst = relay_bytes_per_second, relay_burst_bytes
        self._relay_budget: dict[tuple[str, str], TokenBucket] = {}  # bytes, per endpoint
        self.relay_dropped = 0
        self._log = RateLimitedLogger(log)

    def add_transport(self, transport: ChannelTransport) -> None:
        self.transports[transport.name] = transport

    # --- from endpoints ------------------------------------------------------------------------

    def opened(self, conference_id: str, endpoint_id: str, via: str, *, take_over: bool = True) -> None:
        """The endpoint's channel on transport ``via`` just opened. With ``take_over`` it is used
        from now on; without, only if the endpoint has used no other yet (jitsi-videobridge: a
        WebSocket that connects takes over, a data channel that opens does not)."""
        key = (conference_id, endpoint_id)
        if take_over or key not in self._preferred:
            self._preferred[key] = via
        if self.on_open is not None:
            try:
                self.on_open(conference_id, endpoint_id)
            except Exception:  # a bug in what is sent: the channel itself stays open
                log.exception("bridge channel open of endpoint=%s: sending its state failed", endpoint_id)

    def receive(self, conference_id: str, endpoint_id: str, frame: str | bytes, via: str) -> None:
        """One message from an endpoint, as the transport ``via`` received it."""
        self._preferred[(conference_id, endpoint_id)] = via
        try:
            message = bc.parse(frame, max_bytes=self.max_message_bytes, max_depth=self.max_depth)
        except bc.BridgeChannelError as exc:
            self._refuse(conference_id, endpoint_id, exc.field, exc.message, via)
            return
        if isinstance(message, bc.EndpointMessage | bc.EndpointStats) and not self._relay_allowed(
            conference_id, endpoint_id, len(frame)
        ):
            self.relay_dropped += 1
            self._refuse(conference_id, endpoint_id, "", "relayed messages over the endpoint's rate: dropped", via)
            return
        routing = route(message, endpoint_id, self.endpoints_of(conference_id), self.version)
        for target, out in routing.deliveries:
            self.send(conference_id, target, out)
        if routing.to_engine is not None:
            try:
                self.to_engine(conference_id, endpoint_id, routing.to_engine)
            except Exception as exc:  # e.g. a value the engine cannot apply: that endpoint's problem
                self._refuse(conference_id, endpoint_id, "", f"not applied: {type(exc).__name__}: {exc}", via)

    def _relay_allowed(self, conference_id: str, endpoint_id: str, size: int) -> bool:
        """Take ``size`` bytes from the endpoint's relay budget (a token bucket,
        ``services/common/token_bucket.py``)."""
        key = (conference_id, endpoint_id)
        now = self.clock()
        budget = self._relay_budget.get(key)
        if budget is None:
            budget = self._relay_budget[key] = TokenBucket(self.relay_rate, self.relay_burst, now)
        return budget.take(now, size)

    def _refuse(self, conference_id: str, endpoint_id: str, field: str, reason: str, via: str) -> None:
        """A message we do not act on: one rate-limited log line, an ``Error`` back (rate-limited)."""
        self.refused += 1
        self._log.info(
            ("refused", field), "bridge-channel message from endpoint=%s via %s refused: %s%s",
            endpoint_id, via, f"{field}: " if field else "", reason[:200],
        )  # fmt: skip
        key = (conference_id, endpoint_id)
        now = self.clock()
        last = self._last_error.get(key)
        if last is not None and now - last < ERROR_INTERVAL:
            return
        self._last_error[key] = now
        self.send(conference_id, endpoint_id, bc.Error(field=field, reason=reason[:200]))

    # --- to endpoints --------------------------------------------------------------------------

    def send(self, conference_id: str, endpoint_id: str, message: bc.BridgeChannelMessage) -> bool:
        """Queue a message for the endpoint (serialized here, once); False if no transport has an
        open channel to it."""
        text = bc.serialize(message)
        for transport in self._order(conference_id, endpoint_id):
            if transport.send_text(conference_id, endpoint_id, text):
                return True
        return False

    def transport_of(self, conference_id: str, endpoint_id: str) -> str | None:
        """The transport the endpoint used last (None before it used any)."""
        return self._preferred.get((conference_id, endpoint_id))

    def forget(self, conference_id: str, endpoint_id: str) -> None:
        """The endpoint expired."""
        self._preferred.pop((conference_id, endpoint_id), None)
        self._last_error.pop((conference_id, endpoint_id), None)
        self._relay_budget.pop((conference_id, endpoint_id), None)

    def _order(self, conference_id: str, endpoint_id: str) -> list[ChannelTransport]:
        preferred = self.transports.get(self._preferred.get((conference_id, endpoint_id), ""))
        rest = [t for t in self.transports.values() if t is not preferred]
        return [preferred, *rest] if preferred is not None else rest
