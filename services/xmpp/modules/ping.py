"""XMPP Ping (XEP-0199): the server answers a ping with an empty result."""

from __future__ import annotations

from ..hooks import ServerIq
from ..stanza import PING_NS, iq_result
from ..xml import Element


class Ping:
    features = (PING_NS,)

    def on_iq(self, event: ServerIq) -> Element | None:
        if event.payload.ns == PING_NS and event.kind == "get":
            return iq_result(event.iq)
        return None
