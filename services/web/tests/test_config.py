"""Settings and the generated config.js."""

from __future__ import annotations

import json
import re

import pytest

from services.common.config import ConfigError
from services.web.config import config_js, load


def settings_of(script: str) -> dict:
    match = re.search(r"var config = (\{.*?\n\});", script, re.S)
    assert match, script
    return json.loads(match.group(1))


def test_defaults_follow_docker_jitsi_meet() -> None:
    web = load(environ={})
    assert (web.http.host, web.http.port) == ("127.0.0.1", 8100)
    settings = settings_of(config_js(web))
    assert settings["hosts"] == {"domain": "meet.jitsi", "muc": "muc.meet.jitsi", "focus": "focus.meet.jitsi"}
    assert settings["focusUserJid"] == "focus@auth.meet.jitsi"
    assert settings["websocket"] is None  # derived from the page's address in the browser
    assert settings["connectTimeoutMs"] == 8000
    assert settings["channelLastN"] == -1
    assert settings["disableSimulcast"] is False
    assert settings["forceTurnRelay"] is False


def test_last_n_and_simulcast_reach_the_page() -> None:
    settings = settings_of(
        config_js(load(environ={"WEB_CHANNEL_LAST_N": "2", "WEB_DISABLE_SIMULCAST": "true"}))
    )
    assert settings["channelLastN"] == 2
    assert settings["disableSimulcast"] is True
    assert settings_of(config_js(load(environ={"WEB_FORCE_TURN_RELAY": "true"})))["forceTurnRelay"] is True


def test_public_url_gives_websocket_and_bosh_urls() -> None:
    web = load(
        environ={
            "PUBLIC_URL": "https://meet.example.com/",
            "XMPP_DOMAIN": "example.org",
            "XMPP_MUC_DOMAIN": "conference.example.org",
            "WEB_HTTP_PORT": "9100",
        }
    )
    settings = settings_of(config_js(web))
    assert settings["websocket"] == "wss://meet.example.com/xmpp-websocket"
    assert settings["bosh"] == "https://meet.example.com/http-bind"
    assert settings["hosts"]["focus"] == "focus.example.org"
    assert settings["hosts"]["muc"] == "conference.example.org"
    assert web.http.port == 9100
    plain = load(environ={"PUBLIC_URL": "http://127.0.0.1:8000"})
    assert plain.websocket_url == "ws://127.0.0.1:8000/xmpp-websocket"


def test_explicit_websocket_url_wins() -> None:
    web = load(
        environ={
            "PUBLIC_URL": "https://a.example",
            "XMPP_WEBSOCKET_URL": "ws://127.0.0.1:5280/xmpp-websocket",
            "BRIDGE_ICE_LITE": "false",
        }
    )
    settings = settings_of(config_js(web))
    assert settings["websocket"] == "ws://127.0.0.1:5280/xmpp-websocket"


def test_config_js_cannot_be_broken_out_of() -> None:
    web = load(environ={"XMPP_DOMAIN": "x</script><script>alert(1)"})
    assert "</script>" not in config_js(web)


@pytest.mark.parametrize(
    ("environ", "setting", "env"),
    [
        ({"WEB_HTTP_PORT": "eighty"}, "web.http.port", "WEB_HTTP_PORT"),
        ({"WEB_HTTP_PORT": "70000"}, "web.http.port", "WEB_HTTP_PORT"),
        ({"PUBLIC_URL": "meet.example.com"}, "web.public-url", "PUBLIC_URL"),
        ({"XMPP_WEBSOCKET_URL": "http://x/xmpp-websocket"}, "web.xmpp.websocket-url", "XMPP_WEBSOCKET_URL"),
        ({"WEB_CONNECT_TIMEOUT": "0"}, "web.connect-timeout", "WEB_CONNECT_TIMEOUT"),
        ({"WEB_CHANNEL_LAST_N": "-2"}, "web.channel-last-n", "WEB_CHANNEL_LAST_N"),
        ({"WEB_CHANNEL_LAST_N": "all"}, "web.channel-last-n", "WEB_CHANNEL_LAST_N"),
        ({"WEB_DISABLE_SIMULCAST": "perhaps"}, "web.disable-simulcast", "WEB_DISABLE_SIMULCAST"),
    ],
)
def test_bad_settings_name_the_setting(environ: dict[str, str], setting: str, env: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(environ=environ)
    assert err.value.setting == setting
    assert err.value.env == env
    assert env in str(err.value)
