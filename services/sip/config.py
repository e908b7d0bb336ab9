"""The SIP gateway's settings: ``reference.conf`` (root ``sip``), an operator file, environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from services.common import xmpp_names
from services.common.config import EnvVar, NetworkList, Section, load_config, split_list

from . import dtmf

REFERENCE = Path(__file__).with_name("reference.conf")


class Listener(Section):
    host: str
    port: int = Field(ge=0, le=65535)


class TcpSettings(Listener):
    max_connections: int = Field(ge=1, le=100_000)
    idle_timeout: float = Field(gt=0)


class WebSocketSettings(Listener):
    keepalive_mechanism: int = Field(ge=0, le=2)
    keepalive_timeout: float = Field(gt=0)
    keepalive_processes: int = Field(ge=1)
    keepalive_interval: float = Field(gt=0)
    timer_interval: float = Field(gt=0)
    rm_delay_interval: float = Field(ge=0)
    origins: list[str]
    hosts: list[str]
    trusted_proxies: NetworkList


class Limits(Section):
    max_message_size: int = Field(ge=1024, le=1 << 20)
    max_headers: int = Field(ge=8, le=1000)
    max_calls: int = Field(ge=1, le=100_000)
    max_transactions: int = Field(ge=16)
    min_expires: int = Field(ge=1)
    max_expires: int = Field(ge=1)
    default_expires: int = Field(ge=1)
    max_auth_failures: int = Field(ge=1)
    offer_timeout: float = Field(gt=0)
    max_joining: int = Field(ge=1, le=1000)
    requests_per_second: float = Field(ge=0)
    requests_burst: int = Field(ge=1)
    request_exempt_networks: NetworkList


class XmppSettings(Section):
    server: str
    port: int = Field(ge=1, le=65535)
    domain: str = Field(min_length=1)
    auth_domain: str = Field(min_length=1)
    muc_domain: str = Field(min_length=1)
    focus_address: str
    username: str = Field(min_length=1)
    password: str
    iq_timeout: float = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _derived_hosts(cls, data: Any) -> Any:
        return xmpp_names.fill_hosts(data, "auth-domain")

    @property
    def account(self) -> str:
        """The gateway's bare JID, ``jigasi@auth.<domain>`` as Jigasi's."""
        return f"{self.username}@{self.auth_domain}"

    @property
    def focus(self) -> str:
        return self.focus_address or xmpp_names.focus_component(self.domain)


class MediaSettings(Section):
    ice_host_addresses: list[str]
    rtp_host: str
    unverified_send: float = Field(ge=0, le=60)
    consent_timeout: float = Field(gt=0, le=3600)


class DialInSettings(Section):
    number: str
    pins: list[str]
    max_attempts: int = Field(ge=1, le=10)
    max_digits: int = Field(ge=1, le=32)
    digit_timeout: float = Field(gt=0)
    total_timeout: float = Field(gt=0)

    @field_validator("pins")
    @classmethod
    def _pins(cls, value: list[str]) -> list[str]:
        dtmf.parse_pins(value)
        return value

    @property
    def rules(self) -> dtmf.DialInRules:
        return dtmf.DialInRules(dtmf.parse_pins(self.pins), max_attempts=self.max_attempts,
                                max_digits=self.max_digits, digit_timeout=self.digit_timeout,
                                total_timeout=self.total_timeout)


class MsrpSettings(Section):
    max_message_size: int = Field(ge=256, le=1 << 20)
    max_partial_messages: int = Field(ge=1, le=64)
    rate: float = Field(gt=0)
    burst: float = Field(ge=1)
    bind_timeout: float = Field(gt=0)


class SipSettings(Section):
    domains: list[str] = Field(min_length=1)
    realm: str = Field(min_length=1)
    public_host: str = Field(min_length=1)
    accounts: list[str]
    register_auth: bool
    invite_auth: bool
    udp: Listener
    tcp: TcpSettings
    websocket: WebSocketSettings
    http: Listener
    limits: Limits
    xmpp: XmppSettings
    media: MediaSettings
    dial_in: DialInSettings
    msrp: MsrpSettings

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        for item in value:
            user, colon, password = item.partition(":")
            if not colon or not user or not password:
                raise ValueError("each account is user:password")
        return value

    @property
    def account_map(self) -> dict[str, str]:
        return dict(item.split(":", 1) for item in self.accounts)  # type: ignore[misc]


class SipConfig(Section):
    sip: SipSettings


def _bool(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


ENV_VARS = [
    EnvVar("XMPP_DOMAIN", "sip.xmpp.domain"),
    EnvVar("XMPP_DOMAIN", "sip.realm"),
    EnvVar("XMPP_DOMAIN", "sip.domains", lambda v: [v]),
    EnvVar("SIP_DOMAINS", "sip.domains", split_list),
    EnvVar("SIP_REALM", "sip.realm"),
    EnvVar("SIP_PUBLIC_HOST", "sip.public-host"),
    EnvVar("SIP_ACCOUNTS", "sip.accounts", split_list),
    EnvVar("SIP_REGISTER_AUTH", "sip.register-auth", _bool),
    EnvVar("SIP_INVITE_AUTH", "sip.invite-auth", _bool),
    EnvVar("SIP_UDP_HOST", "sip.udp.host"),
    EnvVar("SIP_PORT", "sip.udp.port", int),
    EnvVar("SIP_TCP_HOST", "sip.tcp.host"),
    EnvVar("SIP_PORT", "sip.tcp.port", int),
    EnvVar("SIP_WS_HOST", "sip.websocket.host"),
    EnvVar("SIP_WS_PORT", "sip.websocket.port", int),
    EnvVar("SIP_WS_KEEPALIVE_MECHANISM", "sip.websocket.keepalive-mechanism", int),
    EnvVar("SIP_WS_ORIGINS", "sip.websocket.origins", split_list),
    EnvVar("SIP_WS_HOSTS", "sip.websocket.hosts", split_list),
    EnvVar("SIP_HTTP_HOST", "sip.http.host"),
    EnvVar("SIP_HTTP_PORT", "sip.http.port", int),
    EnvVar("SIP_MAX_CALLS", "sip.limits.max-calls", int),
    EnvVar("SIP_MAX_TRANSACTIONS", "sip.limits.max-transactions", int),
    EnvVar("SIP_REQUESTS_PER_SECOND", "sip.limits.requests-per-second", float),
    EnvVar("SIP_REQUESTS_BURST", "sip.limits.requests-burst", int),
    EnvVar("SIP_REQUEST_EXEMPT_NETWORKS", "sip.limits.request-exempt-networks", split_list),
    EnvVar("XMPP_SERVER", "sip.xmpp.server"),
    EnvVar("XMPP_PORT", "sip.xmpp.port", int),
    EnvVar("XMPP_MUC_DOMAIN", "sip.xmpp.muc-domain"),
    EnvVar("XMPP_AUTH_DOMAIN", "sip.xmpp.auth-domain"),
    EnvVar("JIGASI_XMPP_USER", "sip.xmpp.username"),
    EnvVar("JIGASI_XMPP_PASSWORD", "sip.xmpp.password"),
    EnvVar("XMPP_FOCUS_ADDRESS", "sip.xmpp.focus-address"),
    EnvVar("SIP_ICE_HOST_ADDRESSES", "sip.media.ice-host-addresses", split_list),
    EnvVar("SIP_RTP_HOST", "sip.media.rtp-host"),
    EnvVar("SIP_TRUSTED_PROXIES", "sip.websocket.trusted-proxies", split_list),
    EnvVar("SIP_MEDIA_UNVERIFIED_SEND", "sip.media.unverified-send", float),
    EnvVar("SIP_MEDIA_CONSENT_TIMEOUT", "sip.media.consent-timeout", float),
    EnvVar("SIP_DIALIN_NUMBER", "sip.dial-in.number"),
    EnvVar("SIP_MSRP_BIND_TIMEOUT", "sip.msrp.bind-timeout", float),
    EnvVar("SIP_DIALIN_PINS", "sip.dial-in.pins", split_list),
]


def load(config_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> SipSettings:
    env = os.environ if environ is None else environ
    config_file = config_file or env.get("SIP_CONFIG") or None
    return load_config(SipConfig, REFERENCE, ENV_VARS, config_file=config_file, environ=env).sip
