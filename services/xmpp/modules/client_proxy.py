"""The focus address as a client proxy (Prosody's mod_client_proxy, as Jitsi deploys it).

Clients address the focus as ``focus.<domain>``; the focus itself is an ordinary client session
(``focus@auth.<domain>/focus``). Stanzas to the proxy are forwarded to the target account with
their sender translated into a resource of the proxy (``focus.<domain>/<sender full JID>``);
what the target sends to such an address goes back to the original sender, from the proxy's bare
address. That is the "Jabber address translation" of mod_client_proxy.
"""

from __future__ import annotations

from collections.abc import Callable

from ..jid import JID, InvalidJid, parse_jid
from ..stanza import DISCO_INFO, error_reply, iq_result
from ..xml import CLIENT_NS, Element


class ClientProxy:
    def __init__(
        self,
        domain: str,
        target: JID,
        preferred_resource: str,
        resources_of: Callable[[JID], list[JID]],
        send: Callable[[JID, bytes], bool],
        name: str = "focus",
    ) -> None:
        self.domain = domain
        self.target = target.bare
        self.preferred = target.bare.with_resource(preferred_resource)
        self.resources_of = resources_of
        self.send = send
        self.name = name

    def disco_identity(self) -> tuple[str, str, str]:
        return ("component", "generic", self.name)

    def handle(self, stanza: Element, to: JID, frm: JID) -> None:
        if frm.bare == self.target and to.resource:
            self._from_target(stanza, to, frm)
        else:
            self._to_target(stanza, to, frm)

    def _pick_target(self) -> JID | None:
        resources = self.resources_of(self.target)
        if self.preferred in resources:
            return self.preferred
        return resources[0] if resources else None

    def _to_target(self, stanza: Element, to: JID, frm: JID) -> None:
        kind = stanza.get("type")
        if stanza.name == "presence":
            return  # mod_client_proxy does not proxy presence
        target = self._pick_target()
        if target is None:
            if stanza.name == "iq" and kind in ("get", "set"):
                payload = stanza.first_element()
                if payload is not None and payload.ns == DISCO_INFO and kind == "get":
                    # the proxy itself answers disco#info so clients can find it while it is idle
                    q = Element("query", DISCO_INFO)
                    q.sub("identity", attrs={"category": "component", "type": "generic", "name": self.name})
                    self._reply(iq_result(stanza, q), frm)
                    return
            self._bounce(stanza, frm, "service-unavailable")
            return
        out = Element(stanza.name, CLIENT_NS, dict(stanza.attrs), stanza.children)
        out.attrs["from"] = f"{self.domain}/{frm}"
        out.attrs["to"] = str(target)
        self.send(target, out.to_bytes())

    def _from_target(self, stanza: Element, to: JID, frm: JID) -> None:
        try:
            original = parse_jid(to.resource)
        except InvalidJid:
            return
        out = Element(stanza.name, CLIENT_NS, dict(stanza.attrs), stanza.children)
        out.attrs["from"] = self.domain
        out.attrs["to"] = str(original)
        self.send(original, out.to_bytes())

    def _bounce(self, stanza: Element, frm: JID, condition: str) -> None:
        reply = error_reply(stanza, condition)
        if reply is not None:
            self._reply(reply, frm)

    def _reply(self, reply: Element, to: JID) -> None:
        reply.attrs["from"] = self.domain
        reply.attrs["to"] = str(to)
        self.send(to, reply.to_bytes())
