"""Where a live stream may go: the recorder's decision, without I/O.

A moderator's ``streamid`` may be a full ``rtmp://`` / ``rtmps://`` URL
(:func:`services.common.jibri.parse_stream_url`), and the recorder connects wherever it points:
without a check, a moderator (any guest who opened an empty room, when authentication is off)
could make the recorder open TCP connections to its own loopback, the deployment's private
network (the broker's internal ports, Redis, the bridges' private APIs) or the cloud's metadata
address (169.254.169.254) and send them RTMP — server-side request forgery (OWASP's SSRF
prevention cheat sheet). So:

* if the operator lists stream URLs (``recorder.rtmp-allowed-urls``), the URL must be under one
  of them: same scheme, host and port, and a path that starts with the listed one at a ``/``;
* every address the host resolves to must be a public one (:attr:`ipaddress.IPv4Address.is_global`,
  not multicast) or inside ``recorder.rtmp-allowed-networks`` (for a local RTMP server);
* for ``rtmp://`` the recorder then connects to the address it checked (the URL is rebuilt with
  it), so a name that resolves differently a moment later (DNS rebinding) cannot send it
  elsewhere. ``rtmps://`` keeps the name, which TLS needs (SNI); a rebound name then gets at most a
  TLS ClientHello, never an RTMP command.

A stream key (no ``://``) is appended to the operator's own ``recorder.rtmp-base-url``, which is
trusted as configured.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.common.addresses import Address, Network, in_networks, unmapped
from services.common.jibri import JibriFormatError, StreamTarget, parse_stream_url


class StreamRefused(Exception):
    """The stream may not go there (the message says why; it is sent to the moderator)."""


def public(address: Address) -> bool:
    """An address on the public internet: not loopback, private, link-local, shared (CGNAT),
    documentation, reserved or multicast (IANA's special-purpose registries, RFC 6890)."""
    address = unmapped(address)
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class StreamPolicy:
    allowed_networks: tuple[Network, ...] = ()
    allowed_urls: tuple[StreamTarget, ...] = ()

    @classmethod
    def from_settings(cls, networks: Iterable[str], urls: Iterable[str]) -> StreamPolicy:
        """Raises ValueError for a setting that does not parse."""
        try:
            targets = tuple(parse_stream_url(u) for u in urls)
        except JibriFormatError as exc:
            raise ValueError(f"recorder.rtmp-allowed-urls: {exc}") from None
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks), targets)

    def target(self, url: str) -> StreamTarget:
        """The checked URL, if the operator's list (when there is one) has it."""
        try:
            target = parse_stream_url(url)
        except JibriFormatError as exc:
            raise StreamRefused(str(exc)) from None
        if self.allowed_urls and not any(_under(target, allowed) for allowed in self.allowed_urls):
            raise StreamRefused("streaming is allowed only to the URLs this deployment lists")
        return target

    def allowed(self, address: Address) -> bool:
        return public(address) or in_networks(address, self.allowed_networks)

    def connect_url(self, target: StreamTarget, resolved: Sequence[Address]) -> str:
        """The URL to hand FFmpeg, once ``target.host`` resolved to ``resolved``."""
        if not resolved:
            raise StreamRefused(f"{target.host} has no address")
        for address in resolved:
            if not self.allowed(address):
                raise StreamRefused(
                    f"streaming to {target.host} is not allowed: it resolves to a loopback, private, "
                    "link-local or reserved address"
                )
        if target.scheme == "rtmps" and target.address is None:
            return target.url()
        return target.url(str(resolved[0]))


def _under(target: StreamTarget, allowed: StreamTarget) -> bool:
    if (target.scheme, target.host, target.port) != (allowed.scheme, allowed.host, allowed.port):
        return False
    prefix = allowed.path.split("?", 1)[0]
    path = target.path.split("?", 1)[0]
    if ".." in path.split("/"):
        return False
    if not prefix or prefix == "/":
        return True
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")
