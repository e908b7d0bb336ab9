import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from services.launcher.plan import StackSettings, build_plan
from services.launcher.supervisor import port_conflicts, prepare_run_dir


def settings(tmp_path: Path, **kw: object) -> StackSettings:
    return StackSettings(run_dir=tmp_path, focus_password="f", jvb_password="j", **kw)  # type: ignore[arg-type]


def test_default_stack_has_every_service_in_start_order(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path))
    assert [p.name for p in plan.processes] == ["xmpp", "jvb1", "jvb2", "focus", "recorder", "sip", "web", "turn", "nginx"]
    assert [b.server_id for b in plan.bridges] == ["jvb1", "jvb2"]


def test_ports_are_distinct_and_shift_with_the_offset(tmp_path: Path) -> None:
    base = build_plan(settings(tmp_path))
    shifted = build_plan(settings(tmp_path, port_offset=100))
    ports = [p for proc in base.processes for p in proc.tcp_ports]
    assert len(ports) == len(set(ports))
    assert [p + 100 for p in ports] == [p for proc in shifted.processes for p in proc.tcp_ports]
    assert [p.udp_ports for p in base.processes if p.udp_ports] == [[10000], [10001], [5060], [3478]]


def test_services_share_accounts_and_names(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path, xmpp_domain="example.org", redis_url="redis://127.0.0.1:6379/0"))
    env = {p.name: p.env for p in plan.processes}
    assert env["xmpp"]["JICOFO_AUTH_PASSWORD"] == env["focus"]["JICOFO_AUTH_PASSWORD"] == "f"
    assert env["xmpp"]["JVB_AUTH_PASSWORD"] == env["jvb1"]["JVB_AUTH_PASSWORD"] == "j"
    assert env["xmpp"]["JIBRI_XMPP_PASSWORD"] == env["recorder"]["JIBRI_XMPP_PASSWORD"]
    # the SIP gateway's account: the broker knows it, the gateway logs in with it, the focus knows its name
    assert env["xmpp"]["JIGASI_XMPP_PASSWORD"] == env["sip"]["JIGASI_XMPP_PASSWORD"]
    assert len(env["sip"]["JIGASI_XMPP_PASSWORD"]) >= 16
    assert env["xmpp"]["JIGASI_XMPP_USER"] == env["sip"]["JIGASI_XMPP_USER"] == env["focus"]["JIGASI_XMPP_USER"]
    assert env["recorder"]["JIBRI_RECORDING_DIR"] == str(tmp_path / "recordings")
    assert env["jvb2"]["JVB_WS_SERVER_ID"] == "jvb2"
    assert env["jvb1"]["JVB_WS_DOMAIN"] == "localhost:8000"
    assert env["jvb1"]["JVB_WS_TLS"] == "false"
    assert env["focus"]["XMPP_MUC_DOMAIN"] == "muc.example.org"
    assert (
        env["focus"]["JICOFO_BRIDGE_COLIBRI_URLS"] == "jvb1=http://127.0.0.1:8080,jvb2=http://127.0.0.1:8081"
    )
    assert all(
        e.get("REDIS_URL") == "redis://127.0.0.1:6379/0" for n, e in env.items() if n not in ("nginx", "turn")
    )
    assert "REDIS_URL" not in build_plan(settings(tmp_path)).processes[0].env


def test_https_public_url_makes_bridges_advertise_wss(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path, public_url="https://meet.example.org"))
    jvb1 = plan.processes[1].env
    assert (jvb1["JVB_WS_DOMAIN"], jvb1["JVB_WS_TLS"]) == ("meet.example.org", "true")


def test_nginx_routes_each_bridge_and_hides_colibri_rest(tmp_path: Path) -> None:
    conf = build_plan(settings(tmp_path)).nginx_config()
    assert "location ^~ /colibri-ws/jvb1/ {" in conf
    assert "proxy_pass http://127.0.0.1:9091;" in conf  # the request URI passed on as sent
    assert "location ^~ /colibri-ws/ { return 404; }" in conf
    assert "location /colibri/ { return 404; }" in conf
    for private in (":8080", ":8081"):  # the bridges' private REST ports are never proxied
        assert private not in conf
    assert "{{" not in conf


@pytest.mark.peer
@pytest.mark.skipif(
    not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(), reason="nginx not installed"
)
def test_real_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path))
    prepare_run_dir(plan)
    result = subprocess.run(
        [
            "/usr/sbin/nginx",
            "-t",
            "-e",
            "stderr",
            "-p",
            str(tmp_path / "nginx"),
            "-c",
            str(tmp_path / "nginx" / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_port_conflicts_name_the_port_and_service(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        plan = build_plan(settings(tmp_path, http_port=taken))
        problems = port_conflicts(plan)
    assert any(f"TCP port {taken} (needed by nginx)" in p for p in problems)


def test_coturn_and_the_broker_share_the_turn_secret(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path, turn_secret="t0p", port_offset=10))
    env = {p.name: p.env for p in plan.processes}
    turn = next(p for p in plan.processes if p.name == "turn")
    assert turn.argv[1:] == ["-m", "services.turn"]
    assert env["turn"]["TURN_CREDENTIALS"] == env["xmpp"]["TURN_CREDENTIALS"] == "t0p"
    assert env["xmpp"]["TURN_PORT"] == env["turn"]["TURN_PORT"] == "3488"
    assert env["xmpp"]["TURN_HOST"] == "127.0.0.1"  # what coturn listens on locally
    public = build_plan(settings(tmp_path, public_url="https://meet.example.org"))
    assert public.processes[0].env["TURN_HOST"] == "meet.example.org"
    assert turn.health_url == "stun:127.0.0.1:3488"
    assert env["turn"]["TURN_ALLOWED_PEER_IPS"] == "127.0.0.1"  # the bridges' advertised address


def test_turn_can_be_left_out(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path, turn=False))
    assert "turn" not in [p.name for p in plan.processes]
    assert "TURN_CREDENTIALS" not in plan.processes[0].env
