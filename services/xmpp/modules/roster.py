"""Rosters (RFC 6121 section 2): Parley keeps none; an account's own roster get is answered empty."""

from __future__ import annotations

from ..hooks import ServerIq
from ..stanza import ROSTER_NS, iq_result
from ..xml import Element


class EmptyRoster:
    features: tuple[str, ...] = ()

    def on_iq(self, event: ServerIq) -> Element | None:
        if (
            event.payload.ns == ROSTER_NS
            and event.kind == "get"
            and event.to.node
            and event.frm.bare == event.to
        ):
            return iq_result(event.iq, Element("query", ROSTER_NS))
        return None
