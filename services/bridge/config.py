"""The bridge's settings: ``reference.conf`` (jvb.conf shape) + ``--config``/``$JVB_CONFIG`` + env.

Environment variables use docker-jitsi-meet's names (table in :data:`ENV_VARS`). Derived values
(server id from the hostname, web-socket domain/TLS from ``PUBLIC_URL``, auth and internal MUC
domains from the XMPP domain) are resolved by :func:`load`, so the rest of the bridge reads one
validated, complete :class:`BridgeConfig`.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator

from services.common import xmpp_names
from services.common.config import ConfigError, EnvVar, Section, load_config, split_list
from services.common.ws_admin_http import WsAdminConfig, ws_env

REFERENCE = Path(__file__).with_name("reference.conf")


def _bool(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _port_range(value: Any) -> tuple[int, int]:
    """``9090`` or ``"9090"`` -> (9090, 9090); ``"9090-9109"`` -> (9090, 9109)."""
    if isinstance(value, tuple | list) and len(value) == 2:
        first, last = int(value[0]), int(value[1])
    elif isinstance(value, bool):
        raise ValueError("expected a port or a range like 10000-10019")
    elif isinstance(value, int):
        first = last = value
    elif isinstance(value, str):
        parts = value.strip().split("-")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError("expected a port or a range like 10000-10019")
        first, last = int(parts[0]), int(parts[-1])
    else:
        raise ValueError("expected a port or a range like 10000-10019")
    if not (0 <= first <= last <= 65535):
        raise ValueError(f"{first}-{last} is not a port range within 0-65535")
    return first, last


PortSpec = Annotated[tuple[int, int], BeforeValidator(_port_range)]
"""A port, or a range of ports of which the bridge takes one slot (docker compose --scale)."""


class PublicHttp(Section):
    host: str = "127.0.0.1"
    port: PortSpec = (9090, 9090)
    tls_port: int | None = Field(None, ge=0, le=65535)
    key_store_path: str | None = None
    key_store_password: str | None = None
    tls_certificate_path: str | None = None
    tls_private_key_path: str | None = None

    @property
    def tls(self) -> bool:
        return self.tls_port is not None and self.certificate_files is not None

    @property
    def certificate_files(self) -> tuple[str, str] | None:
        """(certificate PEM, private key PEM); ``key-store-path`` may be a PEM holding both."""
        if self.tls_certificate_path and self.tls_private_key_path:
            return self.tls_certificate_path, self.tls_private_key_path
        if self.key_store_path and self.key_store_path.endswith(".pem"):
            return self.key_store_path, self.key_store_path
        return None


class PrivateHttp(Section):
    host: str = "127.0.0.1"
    port: PortSpec = (8080, 8080)


class HttpServers(Section):
    public: PublicHttp
    private: PrivateHttp


_SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class WebSockets(WsAdminConfig):
    """jitsi-videobridge's ``websockets`` block, plus the WebSocket admin's settings (Kamailio's
    websocket module names: keepalive-mechanism, keepalive-timeout, ..., origins, hosts)."""

    enabled: bool = True
    tls: bool = False
    domain: str | None = None
    server_id: str | None = None
    max_message_size: int = Field(1 << 20, ge=1024)
    max_queued_bytes: int = Field(1 << 20, ge=4096)

    @field_validator("server_id")
    @classmethod
    def _server_id_is_a_path_segment(cls, value: str | None) -> str | None:
        if value is not None and not _SERVER_ID.match(value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (it is a URL path segment)")
        return value


class BridgeChannel(Section):
    max_message_size: int = Field(64 * 1024, ge=1024)
    max_depth: int = Field(32, ge=4, le=256)
    relay_bytes_per_second: int = Field(32 * 1024, ge=1024)
    relay_burst_bytes: int = Field(128 * 1024, ge=1024)


class IceTcp(Section):
    enabled: bool = False
    port: int = Field(default=4443, ge=0, le=65535)
    mapped_port: int | None = Field(default=None, ge=1, le=65535)


class Ice(Section):
    udp_port: PortSpec = (10000, 10000)
    bind_address: str = "0.0.0.0"
    advertise_ips: list[str] = Field(default_factory=list)
    stun_servers: list[str] = Field(default_factory=list)
    tcp: IceTcp = IceTcp()


class Forwarding(Section):
    native_loop: bool = True
    send_side_bwe: bool = True


class Colibri(Section):
    default_expire: timedelta = timedelta(seconds=60)
    conference_idle_timeout: timedelta = timedelta(seconds=60)
    expire_check_interval: timedelta = timedelta(seconds=1)


class LoadManagement(Section):
    max_packet_rate: int = Field(50000, gt=0)


class XmppClient(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(5222, ge=1, le=65535)
    domain: str = "meet.jitsi"
    auth_domain: str | None = None
    username: str = "jvb"
    password: str | None = None
    brewery_muc: str = "jvbbrewery"
    internal_muc_domain: str | None = None
    presence_interval: timedelta = timedelta(seconds=5)
    reconnect_min: timedelta = timedelta(seconds=1)
    reconnect_max: timedelta = timedelta(seconds=30)
    use_tls: bool = False
    max_stanza_depth: int = Field(32, ge=8, le=1000)
    max_stanza_size: int = Field(1 << 20, ge=4096)


class Apis(Section):
    xmpp_client: XmppClient


class Videobridge(Section):
    http_servers: HttpServers
    websockets: WebSockets
    bridge_channel: BridgeChannel = Field(default_factory=lambda: BridgeChannel.model_validate({}))
    ice: Ice
    forwarding: Forwarding
    colibri: Colibri
    load_management: LoadManagement
    region: str | None = None
    drain: bool = False
    graceful_shutdown_max_wait: timedelta = timedelta(hours=1)
    apis: Apis


class BridgeConfig(Section):
    videobridge: Videobridge

    # Convenience accessors for the resolved values (see load()).
    @property
    def vb(self) -> Videobridge:
        return self.videobridge

    @property
    def server_id(self) -> str:
        return self.videobridge.websockets.server_id or "default-id"

    @property
    def xmpp(self) -> XmppClient:
        return self.videobridge.apis.xmpp_client

    @property
    def udp_port(self) -> int:
        return self.videobridge.ice.udp_port[0]

    @property
    def private_port(self) -> int:
        return self.videobridge.http_servers.private.port[0]

    @property
    def public_port(self) -> int:
        return self.videobridge.http_servers.public.port[0]


def _public_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL like https://meet.example.com")
    return value


ENV_VARS = [
    EnvVar("JVB_PORT", "videobridge.ice.udp-port"),
    EnvVar("JVB_ADVERTISE_IPS", "videobridge.ice.advertise-ips", split_list),
    EnvVar("JVB_STUN_SERVERS", "videobridge.ice.stun-servers", split_list),
    EnvVar("JVB_TCP_HARVESTER_DISABLED", "videobridge.ice.tcp.enabled", lambda v: not _bool(v)),
    EnvVar("JVB_TCP_PORT", "videobridge.ice.tcp.port", int),
    EnvVar("JVB_TCP_MAPPED_PORT", "videobridge.ice.tcp.mapped-port", int),
    EnvVar("JVB_NATIVE_FORWARDING", "videobridge.forwarding.native-loop", _bool),
    EnvVar("JVB_SEND_SIDE_BWE", "videobridge.forwarding.send-side-bwe", _bool),
    EnvVar("JVB_WS_SERVER_ID", "videobridge.websockets.server-id"),
    EnvVar("JVB_WS_DOMAIN", "videobridge.websockets.domain"),
    EnvVar("JVB_WS_TLS", "videobridge.websockets.tls", _bool),
    *ws_env("JVB_WS", "videobridge.websockets"),
    EnvVar("JVB_COLIBRI_PORT", "videobridge.http-servers.private.port"),
    EnvVar("JVB_COLIBRI_HOST", "videobridge.http-servers.private.host"),
    EnvVar("JVB_PUBLIC_PORT", "videobridge.http-servers.public.port"),
    EnvVar("JVB_PUBLIC_HOST", "videobridge.http-servers.public.host"),
    EnvVar("XMPP_SERVER", "videobridge.apis.xmpp-client.host"),
    EnvVar("XMPP_PORT", "videobridge.apis.xmpp-client.port", int),
    EnvVar("XMPP_DOMAIN", "videobridge.apis.xmpp-client.domain"),
    EnvVar("XMPP_AUTH_DOMAIN", "videobridge.apis.xmpp-client.auth-domain"),
    EnvVar("XMPP_INTERNAL_MUC_DOMAIN", "videobridge.apis.xmpp-client.internal-muc-domain"),
    EnvVar("JVB_AUTH_USER", "videobridge.apis.xmpp-client.username"),
    EnvVar("JVB_AUTH_PASSWORD", "videobridge.apis.xmpp-client.password"),
    EnvVar("JVB_BREWERY_MUC", "videobridge.apis.xmpp-client.brewery-muc"),
    EnvVar("JVB_REGION", "videobridge.region"),
]


def _hostname_server_id() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname() or "") or "default-id"
    return name[:63] if name[0].isalnum() else "jvb-" + name[:59]


PortsFree = Callable[[int, int, int], bool]
"""(udp media port, private http port, public http port) -> can this bridge bind all three?"""


def ports_free(udp: int, private: int, public: int) -> bool:
    for kind, port in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, private), (socket.SOCK_STREAM, public)):
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


_CLAIMS: list[socket.socket] = []
"""The claims of the slot this process took (held until it exits; the kernel then frees them)."""


def claim_ports(udp: int, private: int, public: int) -> bool:
    """Claim a slot atomically, then check its ports are free.

    Replicas started together (``docker compose up --scale bridge=3``) would otherwise all see
    slot 0 free and race to bind it. Each port of the slot is claimed by binding an abstract
    UNIX socket named after it (Linux: one namespace per network namespace, which host-network
    containers and the launcher's processes share; binding is atomic and the name is freed when
    the process dies, however it dies). A slot claimed by another bridge is skipped at once.
    """
    held: list[socket.socket] = []
    for kind, port in (("udp", udp), ("tcp", private), ("tcp", public)):
        if port == 0:
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(f"\0parley-bridge-port-{kind}-{port}")
        except OSError:
            s.close()
            for h in held:
                h.close()
            return False
        held.append(s)
    if not ports_free(udp, private, public):
        for h in held:
            h.close()
        return False
    _CLAIMS.extend(held)
    return True


def port_ranges(vb: Videobridge) -> list[tuple[int, int]]:
    """(first, last) of the UDP media, private HTTP and public HTTP ports."""
    return [vb.ice.udp_port, vb.http_servers.private.port, vb.http_servers.public.port]


STATE_FILE = Path("/tmp/parley-bridge.json")
"""Where a bridge started with port ranges writes the ports it took (read by ``healthcheck``)."""


def choose_slot(vb: Videobridge, free: PortsFree) -> tuple[int, int, int]:
    """The first slot i whose UDP, private and public ports (``first + i`` of each range) are free
    (by default: claimed for this process, :func:`claim_ports`)."""
    ranges = port_ranges(vb)
    sizes = {last - first + 1 for first, last in ranges if last != first}
    if not sizes:
        return ranges[0][0], ranges[1][0], ranges[2][0]
    if len(sizes) > 1:
        raise ConfigError(
            "videobridge.ice.udp-port",
            "the port ranges of media, private and public HTTP must have the same length",
        )
    for i in range(sizes.pop()):
        ports = tuple(first if first == last else first + i for first, last in ranges)
        if free(*ports):
            return ports  # type: ignore[return-value]
    raise ConfigError("videobridge.ice.udp-port", "no free slot in the configured port ranges")


def load(
    config_file: str | None = None, environ: Mapping[str, str] | None = None, free: PortsFree = claim_ports
) -> BridgeConfig:
    """Read and validate the bridge's settings and fill in the derived ones.

    Port ranges (``JVB_PORT=10000-10019`` with ``JVB_COLIBRI_PORT=8080-8099`` and
    ``JVB_PUBLIC_PORT=9090-9109``) are resolved to the first free slot; the default server id is
    then ``<hostname>-<public port>`` (what nginx routes on), otherwise the hostname.
    """
    environ = os.environ if environ is None else environ
    return resolve(read(config_file, environ), environ, free)


def read(config_file: str | None = None, environ: Mapping[str, str] | None = None) -> BridgeConfig:
    """The validated settings as given (port ranges and derived values unresolved)."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("JVB_CONFIG") or None
    return load_config(BridgeConfig, REFERENCE, ENV_VARS, config_file=config_file, environ=environ)


def resolve(cfg: BridgeConfig, environ: Mapping[str, str], free: PortsFree = claim_ports) -> BridgeConfig:
    """Pick the port slot and fill in server id, web-socket domain/TLS and XMPP domains."""
    vb = cfg.videobridge
    ranged = vb.http_servers.public.port[0] != vb.http_servers.public.port[1]
    udp, private, public = choose_slot(vb, free)
    vb = vb.model_copy(
        update={
            "ice": vb.ice.model_copy(update={"udp_port": (udp, udp)}),
            "http_servers": vb.http_servers.model_copy(
                update={
                    "private": vb.http_servers.private.model_copy(update={"port": (private, private)}),
                    "public": vb.http_servers.public.model_copy(update={"port": (public, public)}),
                }
            ),
        }
    )
    ws = vb.websockets
    public_url = environ.get("PUBLIC_URL")
    domain, tls = ws.domain, ws.tls
    if public_url and not environ.get("JVB_WS_DOMAIN") and ws.domain is None:
        try:
            parts = urlsplit(_public_url(public_url))
        except ValueError as exc:
            raise ConfigError(
                "videobridge.websockets.domain", f"{public_url!r}: {exc}", env="PUBLIC_URL"
            ) from exc
        domain = parts.netloc
        if not environ.get("JVB_WS_TLS"):
            tls = parts.scheme == "https"
    if domain is None:
        domain = f"127.0.0.1:{public}"
    server_id = ws.server_id or (f"{_hostname_server_id()}-{public}" if ranged else _hostname_server_id())
    xmpp = vb.apis.xmpp_client
    xmpp = xmpp.model_copy(
        update={
            "auth_domain": xmpp.auth_domain or xmpp_names.auth_domain(xmpp.domain),
            "internal_muc_domain": xmpp.internal_muc_domain or xmpp_names.internal_muc_domain(xmpp.domain),
        }
    )
    vb = vb.model_copy(
        update={
            "websockets": ws.model_copy(update={"domain": domain, "tls": tls, "server_id": server_id}),
            "apis": vb.apis.model_copy(update={"xmpp_client": xmpp}),
        }
    )
    return cfg.model_copy(update={"videobridge": vb})
