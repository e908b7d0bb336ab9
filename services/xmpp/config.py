"""The broker's settings: ``reference.conf`` + operator file + environment (services/common/config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..common import xmpp_names
from ..common.config import EnvVar, Section, load_config, split_list
from ..common.ws_admin_http import WsAdminConfig, ws_env

REFERENCE = Path(__file__).with_name("reference.conf")


class AccountConfig(Section):
    user: str
    salt: str
    stored_key: str
    server_key: str
    iterations: int = Field(4096, ge=1)


class C2SConfig(Section):
    port: int = Field(ge=0, le=65535)
    bind_address: str
    tls_certificate: str
    tls_key: str
    allow_plain_without_tls: bool
    internal_networks: list[str]


class HttpConfig(Section):
    port: int = Field(ge=0, le=65535)
    trusted_proxies: list[str]
    keepalive_timeout: float = Field(gt=0)
    max_idle_connections: int = Field(ge=1)


class LimitsConfig(Section):
    max_stanza_size: int = Field(ge=1024)
    rate_bytes_per_second: int = Field(ge=1)
    burst_bytes: int = Field(ge=1)
    guest_rate_bytes_per_second: int = Field(ge=1)
    guest_burst_bytes: int = Field(ge=1)
    auth_timeout: float = Field(gt=0)
    idle_timeout: float = Field(ge=0)
    max_depth: int = Field(ge=4, le=1000)
    max_elements: int = Field(ge=16)
    max_pending_elements: int = Field(ge=1000)
    max_header_size: int = Field(ge=512)
    max_outbound_bytes: int = Field(ge=65536)
    max_unacked_stanzas: int = Field(ge=10)
    login_failures_per_address: int = Field(ge=1)
    login_failures_per_account: int = Field(ge=1)
    login_failure_window: float = Field(gt=0)
    login_tarpit_delay: float = Field(ge=0, le=60)
    login_tarpit_per_address: int = Field(ge=1)
    presence_interval: float = Field(ge=0)
    presence_burst: int = Field(ge=1)
    connections_per_second: float = Field(ge=0)
    connections_burst: int = Field(ge=1)
    max_connections_per_address: int = Field(ge=0)
    connection_exempt_networks: list[str]
    connection_refusal_delay: float = Field(ge=0, le=60)


class BoshConfig(Section):
    max_wait: float = Field(gt=0)
    inactivity: float = Field(gt=0)
    hold: int = Field(ge=1)
    max_sessions_per_address: int = Field(ge=1)
    refusal_delay: float = Field(ge=0, le=60)


class StreamManagementConfig(Section):
    resume_timeout: float = Field(ge=0)


class AdminConfig(Section):
    token: str


class ClusterConfig(Section):
    redis_url: str
    node_id: str
    heartbeat_interval: float = Field(gt=0)
    dead_after: float = Field(gt=0)


class ExtDiscoConfig(Section):
    secret: str
    host: str
    port: int = Field(ge=1, le=65535)
    turns_port: int = Field(ge=0, le=65535)
    transports: list[str]
    ttl: int = Field(ge=60)
    stun: bool

    @field_validator("transports")
    @classmethod
    def _known_transports(cls, value: list[str]) -> list[str]:
        if not set(value) <= {"udp", "tcp"}:
            raise ValueError("transports are udp and/or tcp")
        return value


class JwtConfig(Section):
    app_id: str
    app_secret: str
    accepted_issuers: list[str]
    accepted_audiences: list[str]
    asap_keyserver: str
    public_key_file: str
    allow_empty: bool
    end_session_on_expiry: bool


class AuthConfig(Section):
    enabled: bool
    type: str
    guests: bool
    guest_domain: str
    users_file: str
    jwt: JwtConfig

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in ("internal", "jwt"):
            raise ValueError("AUTH_TYPE is internal or jwt")
        return value


def flag(value: str) -> bool:
    """docker-jitsi-meet's booleans: ``1``/``true``/``yes`` (any case) are true."""
    return value.strip().lower() in ("1", "true", "yes", "on")


class XmppConfig(Section):
    domain: str = Field(min_length=1)
    auth_domain: str = Field(min_length=1)
    muc_domain: str = Field(min_length=1)
    internal_muc_domain: str = Field(min_length=1)
    lobby_domain: str = ""
    focus_component: str
    focus_resource: str
    focus_user: str
    focus_password: str
    jvb_user: str
    jvb_password: str
    recorder_user: str
    recorder_password: str
    gateway_user: str = "jigasi"
    gateway_password: str = ""
    accounts: list[AccountConfig]
    c2s: C2SConfig
    http: HttpConfig
    limits: LimitsConfig
    websocket: WsAdminConfig
    bosh: BoshConfig
    stream_management: StreamManagementConfig
    admin: AdminConfig
    cluster: ClusterConfig
    extdisco: ExtDiscoConfig
    auth: AuthConfig

    @property
    def lobby_address(self) -> str:
        return self.lobby_domain or f"lobby.{self.domain}"

    @property
    def guest_domain(self) -> str:
        return self.auth.guest_domain or f"guest.{self.domain}"

    @model_validator(mode="before")
    @classmethod
    def _derived_hosts(cls, data: Any) -> Any:
        return xmpp_names.fill_hosts(data, "auth-domain", "muc-domain", "internal-muc-domain")

    @property
    def focus_address(self) -> str:
        return self.focus_component or xmpp_names.focus_component(self.domain)


class Root(Section):
    xmpp: XmppConfig


ENV = [
    EnvVar("XMPP_DOMAIN", "xmpp.domain"),
    EnvVar("XMPP_AUTH_DOMAIN", "xmpp.auth-domain"),
    EnvVar("XMPP_MUC_DOMAIN", "xmpp.muc-domain"),
    EnvVar("XMPP_INTERNAL_MUC_DOMAIN", "xmpp.internal-muc-domain"),
    EnvVar("XMPP_LOBBY_MUC_DOMAIN", "xmpp.lobby-domain"),
    EnvVar("JICOFO_AUTH_USER", "xmpp.focus-user"),
    EnvVar("JICOFO_AUTH_PASSWORD", "xmpp.focus-password"),
    EnvVar("JVB_AUTH_USER", "xmpp.jvb-user"),
    EnvVar("JVB_AUTH_PASSWORD", "xmpp.jvb-password"),
    EnvVar("JIBRI_XMPP_USER", "xmpp.recorder-user"),
    EnvVar("JIBRI_XMPP_PASSWORD", "xmpp.recorder-password"),
    EnvVar("JIGASI_XMPP_USER", "xmpp.gateway-user"),
    EnvVar("JIGASI_XMPP_PASSWORD", "xmpp.gateway-password"),
    EnvVar("XMPP_C2S_PORT", "xmpp.c2s.port", int),
    EnvVar("XMPP_HTTP_PORT", "xmpp.http.port", int),
    EnvVar("XMPP_BIND_ADDRESS", "xmpp.c2s.bind-address"),
    *ws_env("XMPP_WS", "xmpp.websocket"),
    EnvVar("XMPP_RATE_BYTES_PER_SECOND", "xmpp.limits.rate-bytes-per-second", int),
    EnvVar("XMPP_GUEST_RATE_BYTES_PER_SECOND", "xmpp.limits.guest-rate-bytes-per-second", int),
    EnvVar("XMPP_GUEST_BURST_BYTES", "xmpp.limits.guest-burst-bytes", int),
    EnvVar("XMPP_IDLE_TIMEOUT", "xmpp.limits.idle-timeout", float),
    EnvVar("XMPP_MAX_OUTBOUND_BYTES", "xmpp.limits.max-outbound-bytes", int),
    EnvVar("XMPP_MAX_UNACKED_STANZAS", "xmpp.limits.max-unacked-stanzas", int),
    EnvVar("XMPP_MAX_PENDING_ELEMENTS", "xmpp.limits.max-pending-elements", int),
    EnvVar("XMPP_LOGIN_FAILURES_PER_ADDRESS", "xmpp.limits.login-failures-per-address", int),
    EnvVar("XMPP_LOGIN_FAILURES_PER_ACCOUNT", "xmpp.limits.login-failures-per-account", int),
    EnvVar("XMPP_LOGIN_TARPIT_DELAY", "xmpp.limits.login-tarpit-delay", float),
    EnvVar("XMPP_PRESENCE_INTERVAL", "xmpp.limits.presence-interval", float),
    EnvVar("XMPP_PRESENCE_BURST", "xmpp.limits.presence-burst", int),
    EnvVar("XMPP_CONNECTIONS_PER_SECOND", "xmpp.limits.connections-per-second", float),
    EnvVar("XMPP_CONNECTIONS_BURST", "xmpp.limits.connections-burst", int),
    EnvVar("XMPP_MAX_CONNECTIONS_PER_ADDRESS", "xmpp.limits.max-connections-per-address", int),
    EnvVar("XMPP_CONNECTION_EXEMPT_NETWORKS", "xmpp.limits.connection-exempt-networks", split_list),
    EnvVar("XMPP_CONNECTION_REFUSAL_DELAY", "xmpp.limits.connection-refusal-delay", float),
    EnvVar("XMPP_BOSH_MAX_SESSIONS_PER_ADDRESS", "xmpp.bosh.max-sessions-per-address", int),
    EnvVar("XMPP_BOSH_REFUSAL_DELAY", "xmpp.bosh.refusal-delay", float),
    EnvVar("XMPP_INTERNAL_NETWORKS", "xmpp.c2s.internal-networks", split_list),
    EnvVar("XMPP_TRUSTED_PROXIES", "xmpp.http.trusted-proxies", split_list),
    EnvVar("XMPP_HTTP_KEEPALIVE_TIMEOUT", "xmpp.http.keepalive-timeout", float),
    EnvVar("XMPP_HTTP_MAX_IDLE_CONNECTIONS", "xmpp.http.max-idle-connections", int),
    EnvVar("XMPP_ADMIN_TOKEN", "xmpp.admin.token"),
    EnvVar("REDIS_URL", "xmpp.cluster.redis-url"),
    EnvVar("XMPP_NODE_ID", "xmpp.cluster.node-id"),
    EnvVar("TURN_CREDENTIALS", "xmpp.extdisco.secret"),
    EnvVar("TURN_HOST", "xmpp.extdisco.host"),
    EnvVar("TURN_PORT", "xmpp.extdisco.port", int),
    EnvVar("TURNS_PORT", "xmpp.extdisco.turns-port", int),
    EnvVar("TURN_TRANSPORT", "xmpp.extdisco.transports", split_list),
    EnvVar("TURN_TTL", "xmpp.extdisco.ttl", int),
    EnvVar("ENABLE_AUTH", "xmpp.auth.enabled", flag),
    EnvVar("AUTH_TYPE", "xmpp.auth.type"),
    EnvVar("ENABLE_GUESTS", "xmpp.auth.guests", flag),
    EnvVar("XMPP_GUEST_DOMAIN", "xmpp.auth.guest-domain"),
    EnvVar("XMPP_USERS_FILE", "xmpp.auth.users-file"),
    EnvVar("JWT_APP_ID", "xmpp.auth.jwt.app-id"),
    EnvVar("JWT_APP_SECRET", "xmpp.auth.jwt.app-secret"),
    EnvVar("JWT_ACCEPTED_ISSUERS", "xmpp.auth.jwt.accepted-issuers", split_list),
    EnvVar("JWT_ACCEPTED_AUDIENCES", "xmpp.auth.jwt.accepted-audiences", split_list),
    EnvVar("JWT_ASAP_KEYSERVER", "xmpp.auth.jwt.asap-keyserver"),
    EnvVar("JWT_PUBLIC_KEY_FILE", "xmpp.auth.jwt.public-key-file"),
    EnvVar("JWT_ALLOW_EMPTY", "xmpp.auth.jwt.allow-empty", flag),
    EnvVar("JWT_END_SESSION_ON_EXPIRY", "xmpp.auth.jwt.end-session-on-expiry", flag),
]


def load(config_file: str | Path | None = None, environ: dict[str, str] | None = None) -> XmppConfig:
    return load_config(Root, REFERENCE, ENV, config_file=config_file, environ=environ).xmpp
