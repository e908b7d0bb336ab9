"""Jabber IDs (RFC 7622): ``node@domain/resource``.

Parley's addresses are ASCII-simple (service accounts, UUID guests, room names chosen by clients),
so preparation is limited to case-folding node and domain and checking lengths and forbidden
characters; a malformed address raises :class:`InvalidJid` (``jid-malformed``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

_NODE_FORBIDDEN = set("\"&'/:<>@ \t\r\n")


class InvalidJid(ValueError):
    pass


class JID(NamedTuple):
    node: str
    domain: str
    resource: str

    @property
    def bare(self) -> JID:
        return JID(self.node, self.domain, "") if self.resource else self

    @property
    def is_bare(self) -> bool:
        return not self.resource

    def with_resource(self, resource: str) -> JID:
        return JID(self.node, self.domain, resource)

    def __str__(self) -> str:
        s = f"{self.node}@{self.domain}" if self.node else self.domain
        return f"{s}/{self.resource}" if self.resource else s


@lru_cache(maxsize=65536)
def parse_jid(text: str) -> JID:
    if not text or len(text) > 3071:
        raise InvalidJid(f"bad JID {text[:100]!r}")
    slash = text.find("/")
    if slash >= 0:
        head, resource = text[:slash], text[slash + 1 :]
        if not resource or len(resource) > 1023:
            raise InvalidJid(f"bad resource in {text[:100]!r}")
    else:
        head, resource = text, ""
    at = head.find("@")
    if at >= 0:
        node, domain = head[:at].lower(), head[at + 1 :].lower()
        if not node or len(node) > 1023 or any(c in _NODE_FORBIDDEN for c in node):
            raise InvalidJid(f"bad node in {text[:100]!r}")
    else:
        node, domain = "", head.lower()
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain or len(domain) > 1023 or "@" in domain or any(c.isspace() for c in domain):
        raise InvalidJid(f"bad domain in {text[:100]!r}")
    return JID(node, domain, resource)
