"""coturn's configuration, rendered from Parley's settings (no I/O).

The relay is locked down the way Jitsi's deployment guides and coturn's own security notes ask:

- only the TURN REST scheme (``use-auth-secret`` + ``static-auth-secret``, see
  ``services/common/turn.py``): no static users, credentials expire;
- relaying to loopback, private, link-local, CGNAT, documentation, multicast and reserved ranges
  is denied (``denied-peer-ip``), except the bridges' own addresses (``allowed-peer-ip``, which
  coturn checks first), so the relay reaches the bridges and public peers, never the operator's
  private network;
- no TCP relay allocations (RFC 6062): browsers relay UDP only, and a TCP relay would let a user
  open connections to arbitrary services behind the relay;
- no telnet CLI, no web admin, no software version in responses.

Environment variables (``TurnSettings.from_env``): ``TURN_CREDENTIALS`` (the shared secret, as in
docker-jitsi-meet, required), ``TURN_PORT`` (3478, UDP and TCP), ``TURNS_PORT`` (5349, only with
``TURN_TLS_CERT`` and ``TURN_TLS_KEY``), ``TURN_RELAY_PORTS`` (``49152-65535``), ``TURN_REALM``
(``$XMPP_DOMAIN``), ``TURN_LISTEN_IPS`` (all), ``TURN_RELAY_IP``, ``TURN_EXTERNAL_IP``
(``public`` or ``public/private`` when coturn sits behind a 1:1 NAT), ``TURN_ALLOWED_PEER_IPS``
(the bridges' addresses, comma separated), ``TURN_DENIED_PEER_IPS`` (more ranges to deny),
``TURN_USER_QUOTA`` / ``TURN_TOTAL_QUOTA`` (allocations per user / in all, 0 = no limit),
``TURN_RUN_DIR`` (where the config, pid file and database go).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.config import split_list

# IANA special-purpose ranges (RFC 6890 and its updates) a public relay must never reach.
DENIED_RANGES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)


class TurnConfigError(ValueError):
    """A TURN setting is missing or malformed; the message names the variable."""


def ip_range(spec: str) -> str:
    """``10.0.0.0/8`` or ``10.0.0.1`` or ``10.0.0.1-10.0.0.9`` -> coturn's ``first-last`` form."""
    spec = spec.strip()
    if "-" in spec:
        first, last = (ipaddress.ip_address(p.strip()) for p in spec.split("-", 1))
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"bad address range {spec!r}")
        return f"{first}-{last}"
    net = ipaddress.ip_network(spec, strict=False)
    if net.num_addresses == 1:
        return str(net.network_address)
    return f"{net.network_address}-{net.broadcast_address}"


def _port_range(value: str) -> tuple[int, int]:
    lo, _, hi = value.partition("-")
    first, last = int(lo), int(hi or lo)
    if not (1024 <= first <= last <= 65535):
        raise ValueError(f"bad port range {value!r} (1024-65535)")
    return first, last


@dataclass(frozen=True)
class TurnSettings:
    secret: str
    realm: str = "meet.jitsi"
    port: int = 3478
    tls_port: int = 5349
    tls_cert: str | None = None
    tls_key: str | None = None
    relay_ports: tuple[int, int] = (49152, 65535)
    listen_ips: tuple[str, ...] = ()
    relay_ip: str | None = None
    external_ip: str | None = None
    allowed_peer_ips: tuple[str, ...] = ()
    denied_peer_ips: tuple[str, ...] = ()
    user_quota: int = 0
    total_quota: int = 0
    run_dir: Path = field(default_factory=lambda: Path("/tmp/parley-turn"))

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TurnSettings:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def parse(name: str, fn, default):  # type: ignore[no-untyped-def]
            value = get(name)
            if value is None:
                return default
            try:
                return fn(value)
            except ValueError as exc:
                raise TurnConfigError(f"invalid ${name}: {exc}") from None

        secret = get("TURN_CREDENTIALS")
        if secret is None:
            raise TurnConfigError("$TURN_CREDENTIALS (the TURN shared secret) is required")

        def ips(value: str) -> tuple[str, ...]:
            return tuple(ip_range(v) for v in split_list(value))

        def port(value: str) -> int:
            p = int(value)
            if not 1 <= p <= 65535:
                raise ValueError(f"{p} is not a port")
            return p

        def quota(value: str) -> int:
            q = int(value)
            if q < 0:
                raise ValueError("must be >= 0")
            return q

        tls_cert, tls_key = get("TURN_TLS_CERT"), get("TURN_TLS_KEY")
        if bool(tls_cert) != bool(tls_key):
            raise TurnConfigError("$TURN_TLS_CERT and $TURN_TLS_KEY go together")
        return cls(
            secret=secret,
            realm=get("TURN_REALM") or get("XMPP_DOMAIN") or "meet.jitsi",
            port=parse("TURN_PORT", port, 3478),
            tls_port=parse("TURNS_PORT", port, 5349),
            tls_cert=tls_cert,
            tls_key=tls_key,
            relay_ports=parse("TURN_RELAY_PORTS", _port_range, (49152, 65535)),
            listen_ips=parse(
                "TURN_LISTEN_IPS", lambda v: tuple(str(ipaddress.ip_address(i)) for i in split_list(v)), ()
            ),
            relay_ip=parse("TURN_RELAY_IP", lambda v: str(ipaddress.ip_address(v)), None),
            external_ip=parse("TURN_EXTERNAL_IP", _external_ip, None),
            allowed_peer_ips=parse("TURN_ALLOWED_PEER_IPS", ips, ()),
            denied_peer_ips=parse("TURN_DENIED_PEER_IPS", ips, ()),
            user_quota=parse("TURN_USER_QUOTA", quota, 0),
            total_quota=parse("TURN_TOTAL_QUOTA", quota, 0),
            run_dir=Path(get("TURN_RUN_DIR") or "/tmp/parley-turn"),
        )


def _external_ip(value: str) -> str:
    return "/".join(str(ipaddress.ip_address(p)) for p in value.split("/", 1))


def _allows_loopback(ranges: tuple[str, ...]) -> bool:
    for r in ranges:
        first = ipaddress.ip_address(r.split("-", 1)[0])
        if first.is_loopback:
            return True
    return False


def render_turnserver_conf(s: TurnSettings) -> str:
    """The ``turnserver.conf`` for ``s`` (coturn 4.6 option names)."""
    lines = [
        "# Generated by services/turn/config.py; do not edit.",
        f"listening-port={s.port}",
        "fingerprint",
        "use-auth-secret",
        f"static-auth-secret={s.secret}",
        f"realm={s.realm}",
        f"min-port={s.relay_ports[0]}",
        f"max-port={s.relay_ports[1]}",
        "no-tcp-relay",
        "no-multicast-peers",
        "no-cli",
        "no-software-attribute",
        "stale-nonce=600",
        "no-rfc5780",
        "no-stun-backward-compatibility",
        "response-origin-only-with-rfc5780",
        "log-file=stdout",
        "simple-log",
        f"pidfile={s.run_dir / 'turnserver.pid'}",
        f"userdb={s.run_dir / 'turndb'}",
    ]
    for ip in s.listen_ips:
        lines.append(f"listening-ip={ip}")
    if s.relay_ip:
        lines.append(f"relay-ip={s.relay_ip}")
    if s.external_ip:
        lines.append(f"external-ip={s.external_ip}")
    if s.tls:
        lines += [
            f"tls-listening-port={s.tls_port}",
            f"cert={s.tls_cert}",
            f"pkey={s.tls_key}",
            "no-dtls",
            "no-tlsv1",
            "no-tlsv1_1",
        ]
    else:
        lines += ["no-tls", "no-dtls"]
    if s.user_quota:
        lines.append(f"user-quota={s.user_quota}")
    if s.total_quota:
        lines.append(f"total-quota={s.total_quota}")
    # coturn checks allowed-peer-ip before denied-peer-ip; loopback needs its own switch, and the
    # rest of 127.0.0.0/8 stays denied below
    if _allows_loopback(s.allowed_peer_ips):
        lines.append("allow-loopback-peers")
    for r in s.allowed_peer_ips:
        lines.append(f"allowed-peer-ip={r}")
    for r in (*(ip_range(c) for c in DENIED_RANGES), *s.denied_peer_ips):
        lines.append(f"denied-peer-ip={r}")
    return "\n".join(lines) + "\n"
