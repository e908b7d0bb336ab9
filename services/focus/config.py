"""The focus's settings: ``reference.conf`` (root ``jicofo``), an operator file, environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from services.common import xmpp_names
from services.common.config import EnvVar, Section, load_config, split_list

REFERENCE = Path(__file__).with_name("reference.conf")


class XmppSettings(Section):
    server: str
    port: int = Field(ge=1, le=65535)
    domain: str = Field(min_length=1)
    auth_domain: str = Field(min_length=1)
    muc_domain: str = Field(min_length=1)
    internal_muc_domain: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)
    resource: str = Field(min_length=1)
    nick: str = Field(min_length=1)
    gateway_user: str = Field(default="jigasi", min_length=1)
    iq_timeout: float = Field(gt=0)
    max_stanza_depth: int = Field(default=32, ge=8, le=1000)
    max_stanza_size: int = Field(default=1 << 20, ge=4096)

    @model_validator(mode="before")
    @classmethod
    def _derived_hosts(cls, data: Any) -> Any:
        return xmpp_names.fill_hosts(data, "auth-domain", "muc-domain", "internal-muc-domain")

    @property
    def jid(self) -> str:
        return f"{self.username}@{self.auth_domain}/{self.resource}"

    @property
    def gateway_jid(self) -> str:
        """The SIP gateway's bare JID (Jigasi's account on the auth host): an occupant whose
        real JID has it gets the bridge's mix-minus audio."""
        return f"{self.gateway_user}@{self.auth_domain}".lower()


class BridgeSettings(Section):
    brewery_muc: str = Field(min_length=1)
    colibri_urls: dict[str, str]
    health_interval: float = Field(gt=0)
    health_timeout: float = Field(gt=0)
    health_failures: int = Field(ge=1)
    overloaded_stress: float = Field(gt=0)
    ramp_up_window: float = Field(ge=0)
    min_participant_stress: float = Field(ge=0)
    ice_lite: bool
    colibri_timeout: float = Field(gt=0)
    region: str

    @field_validator("colibri_urls")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        for server_id, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{server_id}: not an http(s) URL: {url!r}")
        return {k: v.rstrip("/") for k, v in value.items()}


class ConferenceSettings(Section):
    channel_expire: int = Field(ge=1)
    enable_sctp: bool
    last_n: int = Field(ge=-1)
    empty_timeout: float = Field(default=60.0, gt=0)
    request_burst: int = Field(default=10, ge=1)
    requests_per_minute: float = Field(default=20.0, gt=0)


class JibriSettings(Section):
    brewery_muc: str = Field(min_length=1)
    iq_timeout: float = Field(gt=0)
    start_attempts: int = Field(ge=1, le=10)
    start_burst: int = Field(default=5, ge=1)
    starts_per_minute: float = Field(default=6.0, gt=0)


class RestSettings(Section):
    host: str
    port: int = Field(ge=0, le=65535)


class AuthenticationSettings(Section):
    enabled: bool = False


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class FocusSettings(Section):
    authentication: AuthenticationSettings = AuthenticationSettings()
    xmpp: XmppSettings
    bridge: BridgeSettings
    conference: ConferenceSettings
    rest: RestSettings
    jibri: JibriSettings
    redis_url: str

    @property
    def brewery_jid(self) -> str:
        return f"{self.bridge.brewery_muc}@{self.xmpp.internal_muc_domain}"

    @property
    def jibri_brewery_jid(self) -> str:
        return f"{self.jibri.brewery_muc}@{self.xmpp.internal_muc_domain}"


class FocusConfig(Section):
    jicofo: FocusSettings


def _url_map(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in split_list(raw):
        server_id, sep, url = item.partition("=")
        if not sep or not server_id.strip() or not url.strip():
            raise ValueError(f"expected server-id=url pairs, got {item!r}")
        out[server_id.strip()] = url.strip()
    return out


ENV_VARS = [
    EnvVar("XMPP_SERVER", "jicofo.xmpp.server"),
    EnvVar("XMPP_PORT", "jicofo.xmpp.port", int),
    EnvVar("XMPP_DOMAIN", "jicofo.xmpp.domain"),
    EnvVar("XMPP_AUTH_DOMAIN", "jicofo.xmpp.auth-domain"),
    EnvVar("XMPP_MUC_DOMAIN", "jicofo.xmpp.muc-domain"),
    EnvVar("XMPP_INTERNAL_MUC_DOMAIN", "jicofo.xmpp.internal-muc-domain"),
    EnvVar("JICOFO_AUTH_USER", "jicofo.xmpp.username"),
    EnvVar("JICOFO_AUTH_PASSWORD", "jicofo.xmpp.password"),
    EnvVar("JIGASI_XMPP_USER", "jicofo.xmpp.gateway-user"),
    EnvVar("JVB_BREWERY_MUC", "jicofo.bridge.brewery-muc"),
    EnvVar("JICOFO_BRIDGE_COLIBRI_URLS", "jicofo.bridge.colibri-urls", _url_map),
    EnvVar("JICOFO_CONFERENCE_EMPTY_TIMEOUT", "jicofo.conference.empty-timeout", float),
    EnvVar("JICOFO_CONFERENCE_REQUEST_BURST", "jicofo.conference.request-burst", int),
    EnvVar("JICOFO_CONFERENCE_REQUESTS_PER_MINUTE", "jicofo.conference.requests-per-minute", float),
    EnvVar("JIBRI_BREWERY_MUC", "jicofo.jibri.brewery-muc"),
    EnvVar("JICOFO_HTTP_PORT", "jicofo.rest.port", int),
    EnvVar("JICOFO_HTTP_HOST", "jicofo.rest.host"),
    EnvVar("REDIS_URL", "jicofo.redis-url"),
    EnvVar("ENABLE_AUTH", "jicofo.authentication.enabled", _flag),
]


def load(config_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> FocusSettings:
    """Reference file, then ``config_file`` (or ``$JICOFO_CONFIG``), then the environment."""
    import os

    env = os.environ if environ is None else environ
    config_file = config_file or env.get("JICOFO_CONFIG") or None
    return load_config(FocusConfig, REFERENCE, ENV_VARS, config_file=config_file, environ=env).jicofo
