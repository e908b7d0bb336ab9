"""The hook server features plug into: small modules (``modules/``) answering IQs addressed to the server (or to an account's bare
JID), each hooking the broker's server-IQ event, as Prosody's ``mod_ping.lua`` hooks
``iq-get/host/urn:xmpp:ping:ping``.

A feature is an object with ``features`` (the ``var`` values it adds to the server's disco#info)
and ``on_iq(event)``: the answer to a :class:`ServerIq`, or None when the IQ is not its own. The
broker asks its features in order; the first answer goes back, and an IQ nobody answers gets
``service-unavailable``. :func:`default_features` is the set every broker starts with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .jid import JID
from .xml import Element


class ServerView(Protocol):
    """What a feature may read of the broker."""

    server_name: str
    version: str

    def disco_features(self) -> list[str]: ...

    def disco_items(self) -> Iterable[tuple[str, str]]: ...


@dataclass(frozen=True)
class ServerIq:
    """An IQ get/set to the server's domain (``to.node`` empty) or to an account's bare JID."""

    iq: Element
    payload: Element
    to: JID
    frm: JID
    kind: str  # "get" or "set"
    server: ServerView


class ServerFeature(Protocol):
    @property
    def features(self) -> tuple[str, ...]: ...

    def on_iq(self, event: ServerIq) -> Element | None: ...


def default_features() -> list[ServerFeature]:
    from .modules.disco import Disco
    from .modules.legacy_session import LegacySession
    from .modules.ping import Ping
    from .modules.roster import EmptyRoster
    from .modules.sm import StreamManagementFeature
    from .modules.version import Version

    return [Disco(), Ping(), Version(), StreamManagementFeature(), EmptyRoster(), LegacySession()]
