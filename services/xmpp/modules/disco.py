"""Service discovery (XEP-0030) of the server and of accounts' bare JIDs."""

from __future__ import annotations

from ..hooks import ServerIq
from ..stanza import DISCO_INFO, DISCO_ITEMS, iq_result
from ..xml import Element


class Disco:
    features = (DISCO_INFO, DISCO_ITEMS)

    def on_iq(self, event: ServerIq) -> Element | None:
        payload, to = event.payload, event.to
        if event.kind != "get":
            return None
        if payload.ns == DISCO_INFO:
            query = Element(
                "query", DISCO_INFO, {"node": payload.attrs["node"]} if "node" in payload.attrs else {}
            )
            if to.node:
                query.sub("identity", attrs={"category": "account", "type": "registered"})
                query.sub("feature", attrs={"var": DISCO_INFO})
            else:
                query.sub(
                    "identity", attrs={"category": "server", "type": "im", "name": event.server.server_name}
                )
                for var in event.server.disco_features():
                    query.sub("feature", attrs={"var": var})
            return iq_result(event.iq, query)
        if payload.ns == DISCO_ITEMS:
            query = Element("query", DISCO_ITEMS)
            if not to.node:
                for jid, name in event.server.disco_items():
                    query.sub("item", attrs={"jid": jid, "name": name})
            return iq_result(event.iq, query)
        return None
