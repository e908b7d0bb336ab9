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


JID_CACHE_SIZE = 8192
JID_CACHE_MAX_LENGTH = 256
"""Parsed JIDs are cached (the same room, focus and occupant addresses come again and again), but
only short ones and only so many: every cached text stays in memory, and a guest can address
stanzas to as many distinct JIDs of up to 3,071 characters as it likes. At most about 8,192 x
256 characters (a few MB) are held; longer JIDs are parsed each time."""


def parse_jid(text: str) -> JID:
    if len(text) <= JID_CACHE_MAX_LENGTH:
        return _parse_jid_cached(text)
    return _parse_jid(text)


def parse_jid_uncached(text: str) -> JID:
    """A JID parsed without going through the cache: for a text seen once, such as the full JID
    a session binds (an anonymous guest's is new at every login, so a flood of logins would fill
    the cache with JIDs nobody addresses again, a few MB kept for good)."""
    return _parse_jid(text)


def _parse_jid(text: str) -> JID:
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


_parse_jid_cached = lru_cache(maxsize=JID_CACHE_SIZE)(_parse_jid)
