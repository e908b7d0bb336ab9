"""Session establishment (RFC 3921 section 3, dropped by RFC 6121): older clients still send it;
it is answered with a result."""

from __future__ import annotations

from ..hooks import ServerIq
from ..stanza import SESSION_NS, iq_result
from ..xml import Element


class LegacySession:
    features: tuple[str, ...] = ()

    def on_iq(self, event: ServerIq) -> Element | None:
        if event.payload.ns == SESSION_NS and event.kind == "set":
            return iq_result(event.iq)
        return None
