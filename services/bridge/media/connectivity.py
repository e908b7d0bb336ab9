"""Whether each endpoint's media is flowing, as jitsi-videobridge's endpoint connection status
monitor decides it. No I/O.

An endpoint is *inactive* when the bridge has received no RTP from it for ``max_inactivity``
seconds (or none at all ``first_transfer_timeout`` seconds after it joined), and *active* again
with its next packet. Each change is announced to the other endpoints as
``EndpointConnectivityStatusChangeEvent`` (docs/protocols.md#bridge-channel); the clients show
"connection interrupted" on that participant's tile. An endpoint whose bridge channel opens later
(a late joiner, a reconnect) is told the current status of every endpoint that is interrupted then
(:meth:`ConnectivityMonitor.status_for_new_channel`), as it missed the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_INACTIVITY = 3.0
FIRST_TRANSFER_TIMEOUT = 15.0


@dataclass
class _Endpoint:
    joined: float
    last_media: float | None = None
    active: bool = True


@dataclass
class ConnectivityMonitor:
    max_inactivity: float = MAX_INACTIVITY
    first_transfer_timeout: float = FIRST_TRANSFER_TIMEOUT
    _endpoints: dict[str, _Endpoint] = field(default_factory=dict)

    def add(self, endpoint: str, now: float) -> None:
        self._endpoints.setdefault(endpoint, _Endpoint(joined=now))

    def remove(self, endpoint: str) -> None:
        self._endpoints.pop(endpoint, None)

    def on_media(self, endpoint: str, now: float) -> None:
        """A packet from ``endpoint`` (cheap: called per packet)."""
        state = self._endpoints.get(endpoint)
        if state is not None:
            state.last_media = now

    def check(self, now: float) -> list[tuple[str, bool]]:
        """The endpoints whose status changed since the last check: ``(endpoint, active)``."""
        changes = []
        for endpoint, state in self._endpoints.items():
            if state.last_media is None:
                active = now - state.joined < self.first_transfer_timeout
            else:
                active = now - state.last_media < self.max_inactivity
            if active != state.active:
                state.active = active
                changes.append((endpoint, active))
        return changes

    def inactive(self) -> list[str]:
        """Endpoints now inactive (to tell an endpoint that just joined)."""
        return [endpoint for endpoint, state in self._endpoints.items() if not state.active]

    def status_for_new_channel(self, endpoint: str) -> list[tuple[str, bool]]:
        """What ``endpoint``'s newly opened bridge channel is told: ``(other, False)`` for every
        other endpoint that is inactive now (active ones need no word: active is the default)."""
        return [(other, False) for other in self.inactive() if other != endpoint]

    def is_active(self, endpoint: str) -> bool:
        state = self._endpoints.get(endpoint)
        return state is None or state.active
