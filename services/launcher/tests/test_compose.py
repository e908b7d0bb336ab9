"""docker-compose.yml: the shape users rely on, checked by a real Compose parser when present."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.launcher.plan import REPO

COMPOSE = REPO / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_and_healthchecks() -> None:
    services = load()["services"]
    assert set(services) == {"nginx", "xmpp", "focus", "bridge", "web", "redis", "recorder", "turn", "sip"}
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no healthcheck"


def test_every_service_is_a_target_of_the_one_dockerfile() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", dockerfile, re.M)
    names = {alias for _, alias in stages}
    assert stages[0][0] == "${DEBIAN_IMAGE}" and "ARG DEBIAN_IMAGE=debian:bookworm-slim" in dockerfile
    # every other stage starts from a stage of this file: one base for every image
    assert all(parent in names for parent, _ in stages[1:]), stages
    for name, svc in load()["services"].items():
        assert svc["build"] == {"context": ".", "target": name}, name
        assert name in names, name


def test_healthchecks_are_plain_arguments_any_engine_runs_as_given() -> None:
    for name, svc in load()["services"].items():
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD", name
        assert all(" " not in arg for arg in test[1:]), f"{name}: {test}"


def test_bridges_take_port_slots_so_they_can_scale() -> None:
    env = load()["services"]["bridge"]["environment"]
    assert env["JVB_PORT"] == "${JVB_PORT:-10000-10019}"
    assert env["JVB_PUBLIC_PORT"] == "${JVB_PUBLIC_PORT:-9090-9109}"
    assert "JVB_WS_SERVER_ID" not in env  # derived per replica


def test_only_nginx_and_media_listen_publicly() -> None:
    services = load()["services"]
    for name in ("xmpp", "focus", "web"):
        env = services[name]["environment"]
        assert "127.0.0.1" in (
            env.get("XMPP_BIND_ADDRESS", "") + env.get("JICOFO_HTTP_HOST", "") + env.get("WEB_HTTP_HOST", "")
        ), name
    assert services["bridge"]["environment"]["JVB_COLIBRI_HOST"] == "127.0.0.1"
    assert "--bind" in services["redis"]["command"]


@pytest.mark.peer
@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (Debian) not installed")
def test_compose_parses(tmp_path: Path) -> None:
    env = {**os.environ, "JICOFO_AUTH_PASSWORD": "x", "JVB_AUTH_PASSWORD": "y", "TURN_CREDENTIALS": "z"}
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    missing = {k: v for k, v in env.items() if k != "JVB_AUTH_PASSWORD"}
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env=missing,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode != 0 and "JVB_AUTH_PASSWORD" in result.stderr


def test_turn_shares_its_secret_with_the_broker_and_only_allows_the_bridges() -> None:
    services = load()["services"]
    turn, xmpp = services["turn"]["environment"], services["xmpp"]["environment"]
    assert turn["TURN_CREDENTIALS"] == xmpp["TURN_CREDENTIALS"]
    assert turn["TURN_ALLOWED_PEER_IPS"] == "${JVB_ADVERTISE_IPS:-}"
    assert turn["TURN_TLS_CERT"] == "/config/tls/cert.pem"
