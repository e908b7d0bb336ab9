"""Software Version (XEP-0092) of the server."""

from __future__ import annotations

from ..hooks import ServerIq
from ..stanza import VERSION_NS, iq_result
from ..xml import Element


class Version:
    features = (VERSION_NS,)

    def on_iq(self, event: ServerIq) -> Element | None:
        if event.payload.ns != VERSION_NS or event.kind != "get" or event.to.node:
            return None
        query = Element("query", VERSION_NS)
        query.sub("name", text=event.server.server_name)
        query.sub("version", text=event.server.version)
        return iq_result(event.iq, query)
