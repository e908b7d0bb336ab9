"""The broker's core: hosts, bound sessions, components, and stanza routing (RFC 6120/6121).

No I/O happens here. Sessions hand in stanzas whose ``from`` they have stamped; the broker decides
where each goes: a bound client session, a component (MUC host, the focus client proxy), the
server itself (its features: ``modules/disco.py``, ``ping.py``, ``version.py``,
``extdisco.py``... each hooking :class:`~.hooks.ServerIq`), another cluster node, or back as an error.

A delivery is bytes: stanzas are serialized once and spliced per recipient, so fan-out costs one
write per recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .hooks import ServerFeature, ServerIq, default_features
from .jid import JID, InvalidJid, parse_jid
from .limits import log_limited
from .sasl import ScramCredential
from .stanza import error_reply
from .tokens import TokenClaims, TokenVerifier
from .xml import CLIENT_NS, Element, escape_attr

log = logging.getLogger("xmpp.broker")


class Deliverable(Protocol):
    """What the broker needs of a bound session (a client stream, or a remote-node proxy)."""

    jid: JID
    priority: int
    available: bool

    def deliver(self, data: bytes) -> None: ...


class Component(Protocol):
    domain: str

    def handle(self, stanza: Element, to: JID, frm: JID) -> None: ...

    def disco_identity(self) -> tuple[str, str, str]: ...


@dataclass
class HostPolicy:
    """A client host: who may log in there, and how."""

    domain: str
    anonymous: bool = False
    accounts: Mapping[str, ScramCredential] = field(default_factory=dict)
    # anonymous logins need a valid JWT (?token= on the URL; services/xmpp/tokens.py)
    tokens: TokenVerifier | None = None
    allow_empty_token: bool = False
    # close a token session's stream when its token's ``exp`` passes (Jitsi lets it outlive it)
    end_session_on_expiry: bool = False
    # people's accounts (AUTH_TYPE=internal): log in from anywhere, unlike the service accounts
    public_login: bool = False

    @property
    def guest(self) -> bool:
        """Sessions here may not address the service accounts' host or the internal MUC."""
        return self.anonymous or self.public_login

    @property
    def mechanisms(self) -> list[str]:
        if self.anonymous:
            return ["ANONYMOUS"]
        return ["SCRAM-SHA-1", "PLAIN"]


class Cluster(Protocol):
    """Optional link to other broker nodes sharing the domain (see ``cluster.py``)."""

    def locate(self, jid: JID) -> str | None: ...

    def forward(self, node: str, jid: JID, data: bytes) -> None: ...

    def forward_stanza(self, node: str, stanza: Element) -> None: ...

    def resources_of(self, bare: JID) -> list[JID]: ...

    def component_node(self, stanza: Element, to: JID) -> str | None: ...

    def known(self, jid: JID) -> bool: ...

    def claims_of(self, jid: JID) -> TokenClaims | None: ...


class Broker:
    """Routes stanzas among sessions, components and the server itself."""

    def __init__(
        self, hosts: Iterable[HostPolicy], server_name: str = "Parley", version: str = "0.1"
    ) -> None:
        self.hosts = {h.domain: h for h in hosts}
        self.components: dict[str, Component] = {}
        self.sessions: dict[JID, dict[str, Deliverable]] = {}
        self.server_name = server_name
        self.version = version
        self.cluster: Cluster | None = None
        # domains a guest (a session on an anonymous host) may not address: the service accounts'
        # host and the internal MUC. Guests reach the focus only through its client-proxy address.
        self.guest_blocked: set[str] = set()
        self.session_listeners: list[Callable[[Deliverable, bool], None]] = []
        self.features: list[ServerFeature] = default_features()
        # plain counters read by the metrics collector (cheaper than Prometheus objects per stanza)
        self.stanzas_routed = 0
        self.deliveries = 0

    # -- registry ---------------------------------------------------------------------------
    def add_component(self, component: Component) -> None:
        self.components[component.domain] = component

    def is_local_domain(self, domain: str) -> bool:
        return domain in self.hosts or domain in self.components

    def bind(self, session: Deliverable) -> Deliverable | None:
        """Register a bound session; returns the session it replaces (same full JID), if any."""
        resources = self.sessions.setdefault(session.jid.bare, {})
        old = resources.get(session.jid.resource)
        resources[session.jid.resource] = session
        for listener in self.session_listeners:
            listener(session, True)
        return old

    def unbind(self, session: Deliverable) -> None:
        resources = self.sessions.get(session.jid.bare)
        if resources is None or resources.get(session.jid.resource) is not session:
            return
        del resources[session.jid.resource]
        if not resources:
            del self.sessions[session.jid.bare]
        for listener in self.session_listeners:
            listener(session, False)

    def session_for(self, jid: JID) -> Deliverable | None:
        resources = self.sessions.get(jid.bare)
        return resources.get(jid.resource) if resources else None

    def session_count(self) -> int:
        return sum(len(r) for r in self.sessions.values())

    # -- delivery ---------------------------------------------------------------------------
    def send_to(self, jid: JID, data: bytes) -> bool:
        """Deliver serialized bytes to one full JID, here or on another node."""
        resources = self.sessions.get(jid.bare)
        if resources is not None:
            session = resources.get(jid.resource)
            if session is not None:
                self.deliveries += 1
                session.deliver(data)
                return True
        if self.cluster is not None:
            node = self.cluster.locate(jid)
            if node is not None:
                self.deliveries += 1
                self.cluster.forward(node, jid, data)
                return True
        return False

    def send_element(self, jid: JID, stanza: Element) -> bool:
        stanza.attrs["to"] = str(jid)
        return self.send_to(jid, stanza.to_bytes())

    # -- routing ----------------------------------------------------------------------------
    def route(self, stanza: Element) -> None:
        """Route a stanza whose ``from`` is trusted (stamped by a session or a component)."""
        self.stanzas_routed += 1
        to_text = stanza.attrs.get("to")
        frm_text = stanza.attrs.get("from", "")
        try:
            frm = parse_jid(frm_text)
        except InvalidJid:
            log_limited(log, logging.WARNING, "bad-from", "dropping stanza with bad from %r", frm_text[:100])
            return
        if to_text is None:
            self._to_own_account(stanza, frm)
            return
        try:
            to = parse_jid(to_text)
        except InvalidJid:
            self.bounce(stanza, "jid-malformed")
            return
        if to.domain in self.guest_blocked:
            host = self.hosts.get(frm.domain)
            if host is not None and host.guest:
                self.bounce(stanza, "service-unavailable")
                return
        component = self.components.get(to.domain)
        if component is not None:
            if self.cluster is not None:
                node = self.cluster.component_node(stanza, to)
                if node is not None:
                    self.cluster.forward_stanza(node, stanza)
                    return
            component.handle(stanza, to, frm)
            return
        if to.domain not in self.hosts:
            self.bounce(stanza, "remote-server-not-found", "this server does not federate")
            return
        if not to.node:
            self._to_server(stanza, to, frm)
        elif to.resource:
            self._to_full(stanza, to, frm)
        else:
            self._to_bare(stanza, to, frm)

    def bounce(self, stanza: Element, condition: str, text: str | None = None) -> None:
        reply = error_reply(stanza, condition, text)
        if reply is None or "to" not in reply.attrs:
            return
        try:
            target = parse_jid(reply.attrs["to"])
        except InvalidJid:
            return
        if target.domain in self.hosts and target.node:
            self._deliver_direct(reply, target)

    def _deliver_direct(self, stanza: Element, to: JID) -> None:
        if to.resource:
            self.send_to(to, stanza.to_bytes())
        else:
            for jid in self._available(to):
                self.send_to(jid, stanza.to_bytes())

    def _available(self, bare: JID) -> list[JID]:
        out = [s.jid for s in self.sessions.get(bare, {}).values() if s.available and s.priority >= 0]
        if self.cluster is not None:
            out.extend(j for j in self.cluster.resources_of(bare) if j not in out)
        return out

    def _to_full(self, stanza: Element, to: JID, frm: JID) -> None:
        data = stanza.to_bytes()
        if self.send_to(to, data):
            return
        kind = stanza.name
        if kind == "message":
            if stanza.get("type") in ("groupchat", "headline", "error"):
                return
            self._to_bare(stanza, to.bare, frm)
        elif kind == "iq":
            if stanza.get("type") in ("get", "set"):
                self.bounce(stanza, "service-unavailable")
        # presence to an absent resource is dropped (RFC 6121 section 8.5.3.2.3)

    def _to_bare(self, stanza: Element, to: JID, frm: JID) -> None:
        kind = stanza.name
        if kind == "iq":
            self._server_iq(stanza, to, frm)
            return
        targets = self._available(to)
        if kind == "message":
            if stanza.get("type") == "groupchat" or not targets:
                if stanza.get("type") not in ("groupchat", "headline", "error"):
                    self.bounce(stanza, "service-unavailable")
                return
            stanza.attrs["to"] = str(to)
            head, tail = stanza.split_at_to()
            for jid in targets:
                self.send_to(jid, head + escape_attr(str(jid)).encode() + tail)
        elif kind == "presence":
            data = stanza.to_bytes()
            for jid in targets:
                self.send_to(jid, data)

    def _to_own_account(self, stanza: Element, frm: JID) -> None:
        if stanza.name == "iq":
            self._server_iq(stanza, frm.bare, frm)
        elif stanza.name == "message":
            self._to_bare(stanza, frm.bare, frm)
        # broadcast presence: there are no rosters, so nobody to tell

    def _to_server(self, stanza: Element, to: JID, frm: JID) -> None:
        if stanza.name == "iq":
            self._server_iq(stanza, to, frm)
        elif stanza.name == "message" and stanza.get("type") not in ("error", "groupchat", "headline"):
            self.bounce(stanza, "service-unavailable")

    # -- what server features read (hooks.ServerView) ----------------------------------------
    def disco_features(self) -> list[str]:
        return [var for feature in self.features for var in feature.features]

    def disco_items(self) -> list[tuple[str, str]]:
        return [(domain, comp.disco_identity()[2]) for domain, comp in self.components.items()]

    def _server_iq(self, iq: Element, to: JID, frm: JID) -> None:
        """IQs the server answers for its domain and for accounts' bare JIDs."""
        kind = iq.get("type")
        if kind not in ("get", "set"):
            return
        payload = iq.first_element()
        if "to" not in iq.attrs:
            iq.attrs["to"] = str(to)
        answer: Element | None = None
        if payload is not None:
            event = ServerIq(iq, payload, to, frm, kind, self)
            for feature in self.features:
                answer = feature.on_iq(event)
                if answer is not None:
                    break
        if answer is None:
            self.bounce(iq, "service-unavailable")
            return
        self._deliver_direct(answer, frm)


def make_message(frm: str, to: str, body: str, kind: str = "chat") -> Element:
    msg = Element("message", CLIENT_NS, {"from": frm, "to": to, "type": kind})
    msg.sub("body", text=body)
    return msg
