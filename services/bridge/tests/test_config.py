"""Bridge settings: reference defaults, docker-jitsi-meet environment names, derived values."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.bridge import config
from services.common.config import ConfigError


def test_reference_defaults() -> None:
    cfg = config.load(environ={})
    vb = cfg.videobridge
    assert vb.http_servers.private.host == "127.0.0.1" and cfg.private_port == 8080
    assert cfg.public_port == 9090 and cfg.udp_port == 10000
    assert vb.websockets.enabled and vb.websockets.tls is False
    assert vb.websockets.domain == "127.0.0.1:9090"
    # the WebSocket admin's settings: Kamailio websocket module names and defaults
    ws = vb.websockets.settings()
    assert (ws.keepalive_mechanism, ws.keepalive_timeout, ws.rm_delay_interval) == (1, 180, 5)
    assert (
        cfg.xmpp.auth_domain == "auth.meet.jitsi"
        and cfg.xmpp.internal_muc_domain == "internal-muc.meet.jitsi"
    )
    assert cfg.xmpp.password is None


def test_environment_overrides() -> None:
    cfg = config.load(
        environ={
            "JVB_PORT": "10001",
            "JVB_ADVERTISE_IPS": "192.0.2.1, 198.51.100.7",
            "JVB_WS_SERVER_ID": "jvb2",
            "JVB_WS_DOMAIN": "meet.example.com:443",
            "JVB_WS_TLS": "true",
            "JVB_COLIBRI_PORT": "8081",
            "JVB_COLIBRI_HOST": "10.0.0.2",
            "JVB_PUBLIC_PORT": "9091",
            "XMPP_SERVER": "xmpp.internal",
            "XMPP_PORT": "5223",
            "XMPP_DOMAIN": "example.org",
            "XMPP_AUTH_DOMAIN": "auth.other.org",
            "JVB_AUTH_USER": "bridge",
            "JVB_AUTH_PASSWORD": "pw",
            "JVB_BREWERY_MUC": "brewery2",
            "JVB_REGION": "eu-west",
        }
    )
    vb = cfg.videobridge
    assert cfg.udp_port == 10001 and vb.ice.advertise_ips == ["192.0.2.1", "198.51.100.7"]
    assert cfg.server_id == "jvb2" and vb.websockets.domain == "meet.example.com:443" and vb.websockets.tls
    assert cfg.private_port == 8081 and vb.http_servers.private.host == "10.0.0.2"
    assert cfg.public_port == 9091 and vb.region == "eu-west"
    x = cfg.xmpp
    assert (x.host, x.port, x.domain, x.auth_domain) == (
        "xmpp.internal",
        5223,
        "example.org",
        "auth.other.org",
    )
    assert x.internal_muc_domain == "internal-muc.example.org"
    assert (x.username, x.password, x.brewery_muc) == ("bridge", "pw", "brewery2")


def test_public_url_gives_ws_domain_and_tls() -> None:
    cfg = config.load(environ={"PUBLIC_URL": "https://meet.example.com"})
    assert cfg.videobridge.websockets.domain == "meet.example.com" and cfg.videobridge.websockets.tls is True
    cfg = config.load(environ={"PUBLIC_URL": "http://localhost:8000", "JVB_WS_TLS": "true"})
    assert cfg.videobridge.websockets.domain == "localhost:8000" and cfg.videobridge.websockets.tls is True
    cfg = config.load(environ={"PUBLIC_URL": "https://a.example", "JVB_WS_DOMAIN": "b.example"})
    assert cfg.videobridge.websockets.domain == "b.example"


def test_server_id_defaults_to_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "parley_jvb_3")
    assert config.load(environ={}).server_id == "parley_jvb_3"


def test_config_file_overrides_reference(tmp_path: Path) -> None:
    f = tmp_path / "jvb.conf"
    f.write_text(
        "videobridge { http-servers { public { tls-port = 8443, tls-certificate-path = /c.pem, "
        "tls-private-key-path = /k.pem } }, websockets { server-id = jvb9, keepalive-timeout = 2 } }"
    )
    cfg = config.load(environ={"JVB_CONFIG": str(f)})
    public = cfg.videobridge.http_servers.public
    assert public.tls and public.certificate_files == ("/c.pem", "/k.pem")
    assert cfg.server_id == "jvb9" and cfg.videobridge.websockets.keepalive_timeout == 2


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"JVB_PORT": "ten"}, "videobridge.ice.udp-port"),
        ({"JVB_PORT": "70000"}, "videobridge.ice.udp-port"),
        ({"JVB_WS_TLS": "maybe"}, "videobridge.websockets.tls"),
        ({"JVB_WS_SERVER_ID": "a/b"}, "videobridge.websockets.server-id"),
        ({"XMPP_PORT": "0"}, "videobridge.apis.xmpp-client.port"),
        ({"PUBLIC_URL": "meet.example.com"}, "videobridge.websockets.domain"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(environ=env)
    assert err.value.setting == setting


RANGES = {"JVB_PORT": "10000-10019", "JVB_COLIBRI_PORT": "8080-8099", "JVB_PUBLIC_PORT": "9090-9109"}


def test_port_ranges_take_the_first_free_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker compose --scale: each replica takes slot i of every range and names itself after it."""
    monkeypatch.setattr(socket, "gethostname", lambda: "dockerhost")
    taken = {10000, 10001}  # two replicas already run
    cfg = config.load(environ=RANGES, free=lambda udp, private, public: udp not in taken)
    assert (cfg.udp_port, cfg.private_port, cfg.public_port) == (10002, 8082, 9092)
    assert cfg.server_id == "dockerhost-9092"  # nginx routes /colibri-ws/<host>-<port>/ to that port
    assert cfg.videobridge.websockets.domain == "127.0.0.1:9092"


def test_port_range_errors() -> None:
    with pytest.raises(ConfigError) as err:
        config.load(environ=RANGES, free=lambda *ports: False)
    assert "no free slot" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.load(environ={**RANGES, "JVB_PORT": "10000-10004"}, free=lambda *ports: True)
    assert "same length" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.load(environ={"JVB_PORT": "10019-10000"})
    assert err.value.setting == "videobridge.ice.udp-port"


def test_nat_settings() -> None:
    ice = config.load(environ={}).videobridge.ice
    assert ice.stun_servers == [] and ice.tcp.enabled is False and ice.tcp.port == 4443
    ice = config.load(
        environ={
            "JVB_STUN_SERVERS": "stun.example.org:3478, 192.0.2.5",
            "JVB_TCP_HARVESTER_DISABLED": "false",
            "JVB_TCP_PORT": "4443",
            "JVB_TCP_MAPPED_PORT": "443",
        }
    ).videobridge.ice
    assert ice.stun_servers == ["stun.example.org:3478", "192.0.2.5"]
    assert ice.tcp.enabled is True and (ice.tcp.port, ice.tcp.mapped_port) == (4443, 443)
    with pytest.raises(ConfigError, match="JVB_TCP_PORT"):
        config.load(environ={"JVB_TCP_PORT": "70000"})
