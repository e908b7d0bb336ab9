"""The XMPP hosts of a deployment, derived from its one client domain: the single place where the
naming rule lives.

docker-jitsi-meet (Parley's default) names them ``auth.<domain>`` (service accounts: focus,
bridges, recorders), ``muc.<domain>`` (conference rooms), ``internal-muc.<domain>`` (brewery
rooms) and ``focus.<domain>`` (the focus's component address). Jitsi's Debian packages use
``conference.<domain>`` and ``internal.auth.<domain>`` for the two MUC hosts instead
(:data:`DEBIAN`); every host can also be set one by one (``XMPP_AUTH_DOMAIN``,
``XMPP_MUC_DOMAIN``, ``XMPP_INTERNAL_MUC_DOMAIN``, ``XMPP_FOCUS``). A service's settings leave a
host empty to have it derived here from ``XMPP_DOMAIN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Layout:
    """How the hosts are named after the client domain (each a prefix)."""

    auth: str = "auth."
    muc: str = "muc."
    internal_muc: str = "internal-muc."
    focus: str = "focus."


DOCKER = Layout()
"""docker-jitsi-meet's names (the default)."""
DEBIAN = Layout(muc="conference.", internal_muc="internal.auth.")
"""The names of Jitsi's Debian packages (``jitsi-meet-prosody``)."""


def auth_domain(domain: str, layout: Layout = DOCKER) -> str:
    return layout.auth + domain


def muc_domain(domain: str, layout: Layout = DOCKER) -> str:
    return layout.muc + domain


def internal_muc_domain(domain: str, layout: Layout = DOCKER) -> str:
    return layout.internal_muc + domain


def focus_component(domain: str, layout: Layout = DOCKER) -> str:
    return layout.focus + domain


_DERIVE = {
    "auth-domain": auth_domain,
    "muc-domain": muc_domain,
    "internal-muc-domain": internal_muc_domain,
}


def fill_hosts(section: Any, *hosts: str) -> Any:
    """For a settings section's ``model_validator(mode="before")``: each of ``hosts`` (HOCON
    names: ``auth-domain``, ``muc-domain``, ``internal-muc-domain``) that is missing, empty or
    null is derived from the section's ``domain``. Anything but a dict with a domain is returned
    as it is, for the model to report."""
    if not isinstance(section, dict):
        return section
    domain = section.get("domain")
    if not isinstance(domain, str) or not domain:
        return section
    filled = dict(section)
    for host in hosts:
        snake = host.replace("-", "_")
        if not filled.get(host) and not filled.get(snake):
            filled.pop(snake, None)
            filled[host] = _DERIVE[host](domain)
    return filled
