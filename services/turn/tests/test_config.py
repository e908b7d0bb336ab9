from pathlib import Path

import pytest

from services.turn.config import TurnConfigError, TurnSettings, ip_range, render_turnserver_conf


def options(conf: str) -> list[str]:
    return [line for line in conf.splitlines() if line and not line.startswith("#")]


def test_rest_credentials_only_and_locked_down() -> None:
    conf = options(render_turnserver_conf(TurnSettings(secret="s3", run_dir=Path("/run/t"))))
    for line in (
        "use-auth-secret",
        "static-auth-secret=s3",
        "no-cli",
        "no-multicast-peers",
        "no-tcp-relay",
        "listening-port=3478",
        "min-port=49152",
        "max-port=65535",
        "no-tls",
        "pidfile=/run/t/turnserver.pid",
    ):
        assert line in conf
    assert "allow-loopback-peers" not in conf
    assert not any(
        line.startswith(("user=", "lt-cred-mech", "web-admin", "allowed-peer-ip")) for line in conf
    )
    for denied in (
        "10.0.0.0-10.255.255.255",
        "127.0.0.0-127.255.255.255",
        "192.168.0.0-192.168.255.255",
        "172.16.0.0-172.31.255.255",
        "169.254.0.0-169.254.255.255",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ):
        assert f"denied-peer-ip={denied}" in conf


def test_bridges_are_allowed_before_the_denied_ranges() -> None:
    conf = options(render_turnserver_conf(TurnSettings(secret="s", allowed_peer_ips=("10.1.2.3",))))
    allowed = conf.index("allowed-peer-ip=10.1.2.3")
    assert allowed < conf.index("denied-peer-ip=10.0.0.0-10.255.255.255")
    assert "allow-loopback-peers" not in conf


def test_loopback_bridge_switches_loopback_peers_on_but_keeps_the_rest_denied() -> None:
    conf = options(render_turnserver_conf(TurnSettings(secret="s", allowed_peer_ips=("127.0.0.1",))))
    assert "allow-loopback-peers" in conf
    assert "allowed-peer-ip=127.0.0.1" in conf
    assert "denied-peer-ip=127.0.0.0-127.255.255.255" in conf


def test_turns_only_with_a_certificate() -> None:
    conf = options(
        render_turnserver_conf(TurnSettings(secret="s", tls_cert="/c.pem", tls_key="/k.pem", tls_port=5350))
    )
    assert {"tls-listening-port=5350", "cert=/c.pem", "pkey=/k.pem", "no-tlsv1"} <= set(conf)
    assert "no-tls" not in conf


def test_from_env() -> None:
    s = TurnSettings.from_env(
        {
            "TURN_CREDENTIALS": "x",
            "XMPP_DOMAIN": "example.org",
            "TURN_PORT": "3479",
            "TURN_RELAY_PORTS": "40000-40999",
            "TURN_ALLOWED_PEER_IPS": "203.0.113.7, 10.0.0.0/30",
            "TURN_EXTERNAL_IP": "198.51.100.1/10.0.0.2",
            "TURN_TLS_CERT": "/c",
            "TURN_TLS_KEY": "/k",
        }
    )
    assert (s.realm, s.port, s.relay_ports, s.tls) == ("example.org", 3479, (40000, 40999), True)
    assert s.allowed_peer_ips == ("203.0.113.7", "10.0.0.0-10.0.0.3")
    assert "external-ip=198.51.100.1/10.0.0.2" in render_turnserver_conf(s)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "TURN_CREDENTIALS"),
        ({"TURN_CREDENTIALS": "x", "TURN_PORT": "70000"}, "TURN_PORT"),
        ({"TURN_CREDENTIALS": "x", "TURN_RELAY_PORTS": "50000-40000"}, "TURN_RELAY_PORTS"),
        ({"TURN_CREDENTIALS": "x", "TURN_ALLOWED_PEER_IPS": "bridge.local"}, "TURN_ALLOWED_PEER_IPS"),
        ({"TURN_CREDENTIALS": "x", "TURN_TLS_CERT": "/c"}, "TURN_TLS_KEY"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(TurnConfigError, match=names):
        TurnSettings.from_env(env)


def test_ip_range_forms() -> None:
    assert ip_range("10.0.0.1") == "10.0.0.1"
    assert ip_range("10.0.0.0/31") == "10.0.0.0-10.0.0.1"
    assert ip_range("10.0.0.1 - 10.0.0.9") == "10.0.0.1-10.0.0.9"
    with pytest.raises(ValueError):
        ip_range("10.0.0.9-10.0.0.1")


def test_main_writes_a_private_config_and_drops_tls_without_the_certificate(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "TURN_CREDENTIALS": "s3",
        "TURN_RUN_DIR": str(tmp_path),
        "TURN_TLS_CERT": str(tmp_path / "missing.pem"),
        "TURN_TLS_KEY": str(tmp_path / "missing.key"),
        "TURN_BINARY": "/bin/true",  # exec'd with "-c <config>" in coturn's place
    }
    done = subprocess.run([sys.executable, "-m", "services.turn"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "TURN over TLS is off" in done.stderr
    conf = tmp_path / "turnserver.conf"
    assert conf.stat().st_mode & 0o077 == 0  # it holds the secret
    assert "no-tls" in options(conf.read_text())
    bad = subprocess.run(
        [sys.executable, "-m", "services.turn"],
        env={**env, "TURN_CREDENTIALS": ""},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "TURN_CREDENTIALS" in bad.stderr
