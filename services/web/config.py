"""Settings of the web service and the ``config.js`` the page reads them from."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from services.common import xmpp_names
from services.common.config import EnvVar, Section, load_config, split_list

REFERENCE = Path(__file__).with_name("reference.conf")
DEFAULT_DIST = Path(__file__).with_name("dist")


class Http(Section):
    host: str
    port: int = Field(ge=1, le=65535)


class Xmpp(Section):
    domain: str = Field(min_length=1)
    muc_domain: str = Field(min_length=1)
    auth_domain: str = Field(min_length=1)
    focus: str = ""
    focus_nick: str = Field(default="focus", min_length=1, pattern=r"^[^\s/@<>'\"&]+$")
    websocket_url: str = ""
    bosh_url: str = ""
    # guests' host (ENABLE_GUESTS); empty: guest.<domain>
    guest_domain: str = ""

    @model_validator(mode="before")
    @classmethod
    def _derived_hosts(cls, data: Any) -> Any:
        return xmpp_names.fill_hosts(data, "auth-domain", "muc-domain")

    @field_validator("websocket_url")
    @classmethod
    def _websocket_scheme(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("ws", "wss"):
            raise ValueError("must be a ws:// or wss:// URL")
        return value


class Auth(Section):
    """docker-jitsi-meet's ENABLE_AUTH / AUTH_TYPE / ENABLE_GUESTS, as the page needs them."""

    enabled: bool = False
    type: str = Field(default="internal", pattern=r"^(internal|jwt)$")
    guests: bool = False


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class Web(Section):
    http: Http
    auth: Auth = Auth()
    public_url: str = ""
    xmpp: Xmpp
    connect_timeout: float = Field(gt=0, le=120)
    media_timeout: float = Field(gt=0, le=600)
    channel_last_n: int = Field(ge=-1)
    disable_simulcast: bool = False
    connect_origins: list[str] = []
    force_turn_relay: bool = False
    dist_dir: str = ""

    @field_validator("connect_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _CSP_ORIGIN.match(origin):
                raise ValueError(f"not a scheme://host[:port] origin: {origin!r}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def dist(self) -> Path:
        return Path(self.dist_dir) if self.dist_dir else DEFAULT_DIST

    @property
    def focus_address(self) -> str:
        return self.xmpp.focus or xmpp_names.focus_component(self.xmpp.domain)

    @property
    def websocket_url(self) -> str | None:
        if self.xmpp.websocket_url:
            return self.xmpp.websocket_url
        if not self.public_url:
            return None
        parts = urlsplit(self.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/xmpp-websocket"

    @property
    def bosh_url(self) -> str | None:
        if self.xmpp.bosh_url:
            return self.xmpp.bosh_url
        return f"{self.public_url}/http-bind" if self.public_url else None


    def connect_src(self) -> list[str]:
        """The page's CSP connect-src: its own origin, the XMPP URLs' origins, the public URL's
        ws/wss twin and ``connect-origins``; never a whole scheme."""
        out = ["'self'"]
        for url in (self.websocket_url, self.bosh_url, self.public_url):
            if url:
                parts = urlsplit(url)
                out.append(f"{parts.scheme}://{parts.netloc}")
        if self.public_url:
            parts = urlsplit(self.public_url)
            out.append(f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}")
        out.extend(self.connect_origins)
        return list(dict.fromkeys(out))


_CSP_ORIGIN = re.compile(r"^(https?|wss?)://[A-Za-z0-9.\-\[\]:*]+$")


class WebConfig(Section):
    web: Web


ENV = [
    EnvVar("WEB_HTTP_HOST", "web.http.host"),
    EnvVar("WEB_HTTP_PORT", "web.http.port", int),
    EnvVar("PUBLIC_URL", "web.public-url"),
    EnvVar("XMPP_DOMAIN", "web.xmpp.domain"),
    EnvVar("XMPP_MUC_DOMAIN", "web.xmpp.muc-domain"),
    EnvVar("XMPP_AUTH_DOMAIN", "web.xmpp.auth-domain"),
    EnvVar("XMPP_FOCUS", "web.xmpp.focus"),
    EnvVar("XMPP_WEBSOCKET_URL", "web.xmpp.websocket-url"),
    EnvVar("XMPP_BOSH_URL", "web.xmpp.bosh-url"),
    EnvVar("WEB_CONNECT_TIMEOUT", "web.connect-timeout", float),
    EnvVar("WEB_MEDIA_TIMEOUT", "web.media-timeout", float),
    EnvVar("WEB_CHANNEL_LAST_N", "web.channel-last-n", int),
    EnvVar("WEB_DISABLE_SIMULCAST", "web.disable-simulcast"),
    EnvVar("WEB_CONNECT_ORIGINS", "web.connect-origins", split_list),
    EnvVar("WEB_FORCE_TURN_RELAY", "web.force-turn-relay"),
    EnvVar("WEB_DIST_DIR", "web.dist-dir"),
    EnvVar("ENABLE_AUTH", "web.auth.enabled", _flag),
    EnvVar("AUTH_TYPE", "web.auth.type"),
    EnvVar("ENABLE_GUESTS", "web.auth.guests", _flag),
    EnvVar("XMPP_GUEST_DOMAIN", "web.xmpp.guest-domain"),
]


def load(config_file: str | None = None, environ: dict[str, str] | None = None) -> Web:
    return load_config(WebConfig, REFERENCE, ENV, config_file=config_file, environ=environ).web


def config_js(web: Web) -> str:
    """The page's ``config.js`` (the shape docker-jitsi-meet's config.js has for these keys).

    URLs left empty in the settings are derived in the browser from the page's own address, so the
    same build works behind any host name.
    """
    settings = {
        "hosts": {
            "domain": web.xmpp.domain,
            "muc": web.xmpp.muc_domain,
            "focus": web.focus_address,
        },
        # "none", "internal" (a login prompt; guests on hosts.anonymousdomain) or "jwt" (?jwt=)
        "authentication": web.auth.type if web.auth.enabled else "none",
        "focusUserJid": f"focus@{web.xmpp.auth_domain}",
        "focusNick": web.xmpp.focus_nick,
        "websocket": web.websocket_url,
        "bosh": web.bosh_url,
        "connectTimeoutMs": int(web.connect_timeout * 1000),
        "mediaTimeoutMs": int(web.media_timeout * 1000),
        "channelLastN": web.channel_last_n,
        "disableSimulcast": web.disable_simulcast,
        "forceTurnRelay": web.force_turn_relay,
    }
    if web.auth.enabled and web.auth.guests:
        settings["hosts"]["anonymousdomain"] = web.xmpp.guest_domain or f"guest.{web.xmpp.domain}"  # type: ignore[index]
    body = json.dumps(settings, indent=2).replace("</", "<\\/")
    return (
        "// Generated by the Parley web service from its settings; do not edit.\n"
        f"var config = {body};\n"
        "(function (c) {\n"
        "  var secure = location.protocol === 'https:';\n"
        "  if (!c.websocket) c.websocket = (secure ? 'wss://' : 'ws://') + location.host + '/xmpp-websocket';\n"
        "  if (!c.bosh) c.bosh = location.protocol + '//' + location.host + '/http-bind';\n"
        "})(config);\n"
    )
