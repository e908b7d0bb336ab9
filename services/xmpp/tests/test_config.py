"""Settings: reference defaults, environment overrides, clear errors naming the setting."""

import pytest

from services.common.config import ConfigError
from services.xmpp.config import load


def test_defaults_follow_docker_jitsi_meet():
    cfg = load(environ={})
    assert (cfg.domain, cfg.auth_domain, cfg.muc_domain, cfg.internal_muc_domain) == (
        "meet.jitsi",
        "auth.meet.jitsi",
        "muc.meet.jitsi",
        "internal-muc.meet.jitsi",
    )
    assert cfg.focus_address == "focus.meet.jitsi"
    assert (cfg.c2s.port, cfg.http.port, cfg.c2s.bind_address) == (5222, 5280, "0.0.0.0")


def test_environment_overrides():
    cfg = load(
        environ={
            "XMPP_DOMAIN": "example.org",
            "XMPP_C2S_PORT": "6222",
            "REDIS_URL": "redis://x",
            "XMPP_WS_ORIGINS": "https://a, https://b",
        }
    )
    assert cfg.domain == "example.org" and cfg.focus_address == "focus.example.org"
    assert cfg.c2s.port == 6222 and cfg.cluster.redis_url == "redis://x"
    assert cfg.websocket.origins == ["https://a", "https://b"]


def test_bad_value_names_the_setting_and_variable():
    with pytest.raises(ConfigError) as err:
        load(environ={"XMPP_C2S_PORT": "not-a-port"})
    assert "xmpp.c2s.port" in str(err.value) and "XMPP_C2S_PORT" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(environ={"XMPP_C2S_PORT": "70000"})
    assert "xmpp.c2s.port" in str(err.value)
