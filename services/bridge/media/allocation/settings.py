"""What one receiver asked for (cf. jitsi-videobridge's ``AllocationSettings``). No I/O.

The Colibri ``last-n`` of its video channel, and the bridge-channel ``LastNChangedEvent`` and
``ReceiverVideoConstraints`` it sent (fields a message leaves out keep their previous value), plus
its downlink estimate. :func:`~.allocator.allocate` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.bridge_channel import LastNChangedEvent, ReceiverVideoConstraints

UNLIMITED = -1


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
