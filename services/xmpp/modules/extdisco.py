"""External service discovery (XEP-0215, ``urn:xmpp:extdisco:2``): STUN and TURN for clients.

What Prosody's ``mod_external_services`` does for Jitsi: a signed-in client asks its server
``<services xmlns='urn:xmpp:extdisco:2'/>`` (optionally ``type='turn'``) or
``<credentials xmlns='urn:xmpp:extdisco:2'>`` for one service, and gets the STUN server and the
TURN servers (UDP, TCP, and TURN over TLS) with short-lived credentials derived from the secret
coturn shares (``services/common/turn.py``). Nothing is stored per user; coturn checks the HMAC.

Only a bound client session of this server gets an answer; anything else (a component, an address
without a resource) gets ``forbidden``. Without a configured secret and host the feature is off
and is not advertised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ...common.turn import turn_credential
from ..hooks import ServerIq
from ..jid import JID
from ..stanza import error_reply, iq_result
from ..xml import Element

EXTDISCO_NS = "urn:xmpp:extdisco:2"
SERVICE_TYPES = ("stun", "turn", "turns")


@dataclass(frozen=True)
class ExtDiscoSettings:
    """``secret``: coturn's ``static-auth-secret``; ``host``: the name clients reach coturn at;
    ``port``: its UDP/TCP port; ``turns_port``: its TLS port (0 = not offered); ``transports``:
    which of ``udp``/``tcp`` TURN is offered over; ``ttl``: credential lifetime in seconds."""

    secret: str
    host: str
    port: int = 3478
    turns_port: int = 0
    transports: tuple[str, ...] = ("udp", "tcp")
    ttl: int = 86400
    stun: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.secret and self.host)


@dataclass(frozen=True)
class _Service:
    type: str
    transport: str
    port: int
    restricted: bool


class ExternalServices:
    """A server feature (``hooks.py``) answering extdisco IQs addressed to the server's domain.
    ``is_client(jid)`` says whether ``jid`` is a bound client session here; ``clock`` gives Unix
    time."""

    def __init__(
        self,
        settings: ExtDiscoSettings,
        is_client: Callable[[JID], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.is_client = is_client
        self.clock = clock
        s = settings
        services: list[_Service] = []
        if s.stun:
            services.append(_Service("stun", "udp", s.port, False))
        services += [_Service("turn", t, s.port, True) for t in s.transports]
        if s.turns_port:
            services.append(_Service("turns", "tcp", s.turns_port, True))
        self.services = services

    @property
    def features(self) -> tuple[str, ...]:
        return (EXTDISCO_NS,) if self.settings.enabled else ()

    def handles(self, payload: Element) -> bool:
        return self.settings.enabled and payload.ns == EXTDISCO_NS

    def on_iq(self, event: ServerIq) -> Element | None:
        """The answer to an extdisco IQ to the server's domain; None for any other IQ."""
        if event.to.node or not self.handles(event.payload):
            return None
        return self.handle(event.iq, event.payload, event.frm)

    def handle(self, iq: Element, payload: Element, frm: JID) -> Element | None:
        """The answer (result or error) to an extdisco IQ from ``frm``."""
        if iq.get("type") != "get" or payload.name not in ("services", "credentials"):
            return error_reply(iq, "bad-request")
        if not (frm.node and frm.resource and self.is_client(frm)):
            return error_reply(iq, "forbidden", "external services are for signed-in clients")
        wanted = payload.get("type")
        if wanted is not None and wanted not in SERVICE_TYPES:
            return error_reply(iq, "bad-request", "unknown service type")
        services = [svc for svc in self.services if wanted is None or svc.type == wanted]
        if payload.name == "credentials":
            # XEP-0215 section 3.2: one <service host= type= [port=]/> to get credentials for
            ask = payload.find("service", EXTDISCO_NS)
            if ask is None or ask.get("host") != self.settings.host:
                return error_reply(iq, "item-not-found")
            port = ask.get("port")
            services = [
                svc
                for svc in self.services
                if svc.restricted
                and svc.type == (ask.get("type") or svc.type)
                and (port is None or str(svc.port) == port)
            ]
            if not services:
                return error_reply(iq, "item-not-found")
        answer = Element(payload.name, EXTDISCO_NS)
        for svc in services:
            answer.append(self._describe(svc, frm))
        return iq_result(iq, answer)

    def _describe(self, svc: _Service, frm: JID) -> Element:
        attrs = {
            "type": svc.type,
            "host": self.settings.host,
            "port": str(svc.port),
            "transport": svc.transport,
        }
        if svc.restricted:
            cred = turn_credential(self.settings.secret, _ident(frm), self.settings.ttl, self.clock())
            attrs.update(
                {
                    "restricted": "1",
                    "username": cred.username,
                    "password": cred.password,
                    # XEP-0082 date-time
                    "expires": datetime.fromtimestamp(cred.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        return Element("service", EXTDISCO_NS, attrs)


def _ident(frm: JID) -> str:
    """The user part of the TURN username: a name coturn logs for the allocation."""
    return f"{frm.node}@{frm.domain}"[:128]
