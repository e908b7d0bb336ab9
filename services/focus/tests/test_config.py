from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.focus import config

BASE = {"JICOFO_AUTH_PASSWORD": "secret"}


def test_defaults_follow_docker_jitsi_meet() -> None:
    s = config.load(environ=BASE)
    assert s.xmpp.jid == "focus@auth.meet.jitsi/focus"
    assert s.brewery_jid == "jvbbrewery@internal-muc.meet.jitsi"
    assert s.rest.port == 8888 and s.redis_url == "" and s.bridge.ice_lite is False


def test_environment_overrides() -> None:
    s = config.load(environ={**BASE, "XMPP_PORT": "15222", "XMPP_DOMAIN": "example.org",
                             "JICOFO_BRIDGE_COLIBRI_URLS": "jvb1=http://127.0.0.1:8080/, jvb2=http://127.0.0.1:8081",
                             "JICOFO_HTTP_PORT": "18888", "REDIS_URL": "redis://127.0.0.1:6379/0"})  # fmt: skip
    assert s.xmpp.port == 15222 and s.xmpp.domain == "example.org"
    assert s.bridge.colibri_urls == {"jvb1": "http://127.0.0.1:8080", "jvb2": "http://127.0.0.1:8081"}
    assert s.rest.port == 18888 and s.redis_url.startswith("redis://")


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({}, "jicofo.xmpp.password"),
        ({**BASE, "XMPP_PORT": "five"}, "jicofo.xmpp.port"),
        ({**BASE, "XMPP_PORT": "70000"}, "jicofo.xmpp.port"),
        ({**BASE, "JICOFO_BRIDGE_COLIBRI_URLS": "jvb1"}, "jicofo.bridge.colibri-urls"),
        ({**BASE, "JICOFO_BRIDGE_COLIBRI_URLS": "jvb1=ftp://x"}, "jicofo.bridge.colibri-urls"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(environ=env)
    assert err.value.setting == setting
