"""What the local stack is made of: every process, its command line, environment and ports.

Pure: builds a :class:`StackPlan` from :class:`StackSettings` and renders the nginx front door's
config from the template in ``nginx/``. The supervisor (``supervisor.py``) runs the plan.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from services.common import xmpp_names

REPO = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = REPO / "nginx" / "parley.conf.template"


@dataclass(frozen=True)
class StackSettings:
    """Ports and names of a local stack. ``port_offset`` shifts every port (for a second stack)."""

    http_port: int = 8000
    port_offset: int = 0
    bridges: int = 2
    public_url: str | None = None
    xmpp_domain: str = "meet.jitsi"
    redis_url: str | None = None
    run_dir: Path = REPO / "run"
    focus_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    jvb_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    recorder_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    gateway_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    nginx_binary: str = "/usr/sbin/nginx"
    # coturn (services/turn): TURN/STUN on turn_port (+ offset), UDP and TCP, relaying from
    # turn_relay_ports; the broker hands out credentials for it (XEP-0215)
    turn: bool = True
    turn_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    turn_relay_ports: tuple[int, int] = (49152, 65535)
    # SIP gateway accounts allowed to REGISTER, "user:password,…" ($SIP_ACCOUNTS; none by default)
    sip_accounts: str = ""
    python: str = sys.executable
    log_level: str = "INFO"
    advertise_ips: str = "127.0.0.1"  # the bridges' host candidates (JVB_ADVERTISE_IPS)
    # authentication (docs/authentication.md): AUTH_VARIABLES taken from the launcher's environment
    auth: dict[str, str] = field(default_factory=dict)

    def port(self, base: int) -> int:
        return base + self.port_offset

    @property
    def front_port(self) -> int:
        return self.port(self.http_port)

    @property
    def url(self) -> str:
        return self.public_url or f"http://localhost:{self.front_port}"


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    tcp_ports: list[int]
    udp_ports: list[int]
    health_url: str
    front_health_path: str  # the same liveness check, through nginx


@dataclass(frozen=True)
class BridgeRoute:
    server_id: str
    public_port: int
    private_port: int


@dataclass(frozen=True)
class StackPlan:
    settings: StackSettings
    processes: list[ProcessSpec]
    bridges: list[BridgeRoute]

    def nginx_config(self) -> str:
        return render_nginx_config(self)


# docker-jitsi-meet's authentication variables, passed to the broker, the focus and the web client
AUTH_VARIABLES = (
    "ENABLE_AUTH",
    "AUTH_TYPE",
    "ENABLE_GUESTS",
    "XMPP_GUEST_DOMAIN",
    "XMPP_USERS_FILE",
    "JWT_APP_ID",
    "JWT_APP_SECRET",
    "JWT_ACCEPTED_ISSUERS",
    "JWT_ACCEPTED_AUDIENCES",
    "JWT_ASAP_KEYSERVER",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_ALLOW_EMPTY",
)
# what the focus and the web client need of them (never the secret)
PUBLIC_AUTH_VARIABLES = ("ENABLE_AUTH", "AUTH_TYPE", "ENABLE_GUESTS", "XMPP_GUEST_DOMAIN")


def _xmpp_names(domain: str) -> dict[str, str]:
    return {
        "XMPP_DOMAIN": domain,
        "XMPP_AUTH_DOMAIN": xmpp_names.auth_domain(domain),
        "XMPP_MUC_DOMAIN": xmpp_names.muc_domain(domain),
        "XMPP_INTERNAL_MUC_DOMAIN": xmpp_names.internal_muc_domain(domain),
    }


def _turn_host(front_host: str | None) -> str:
    return "127.0.0.1" if front_host in (None, "", "localhost") else front_host


def build_plan(s: StackSettings) -> StackPlan:
    py = s.python
    names = _xmpp_names(s.xmpp_domain)
    common = {**names, "LOG_LEVEL": s.log_level, "PUBLIC_URL": s.url}
    if s.redis_url:
        common["REDIS_URL"] = s.redis_url
    accounts = {
        "JICOFO_AUTH_USER": "focus",
        "JICOFO_AUTH_PASSWORD": s.focus_password,
        "JVB_AUTH_USER": "jvb",
        "JVB_AUTH_PASSWORD": s.jvb_password,
        "JIBRI_XMPP_USER": "jibri",
        "JIBRI_XMPP_PASSWORD": s.recorder_password,
        "JIGASI_XMPP_USER": "jigasi",
        "JIGASI_XMPP_PASSWORD": s.gateway_password,
    }
    c2s, xmpp_http = s.port(5222), s.port(5280)
    turn_port = s.port(3478)
    turn_client = (
        {
            "TURN_CREDENTIALS": s.turn_secret,
            # coturn listens on 127.0.0.1 here; "localhost" may resolve to ::1 first in a browser
            "TURN_HOST": _turn_host(urlparse(s.url).hostname),
            "TURN_PORT": str(turn_port),
        }
        if s.turn
        else {}
    )
    focus_http, web_http = s.port(8888), s.port(8100)
    xmpp_client = {"XMPP_SERVER": "127.0.0.1", "XMPP_PORT": str(c2s)}
    public_auth = {k: v for k, v in s.auth.items() if k in PUBLIC_AUTH_VARIABLES}
    procs = [
        ProcessSpec(
            "xmpp",
            [py, "-m", "services.xmpp"],
            {
                **common,
                **accounts,
                **turn_client,
                **s.auth,
                "XMPP_C2S_PORT": str(c2s),
                "XMPP_HTTP_PORT": str(xmpp_http),
                "XMPP_BIND_ADDRESS": "127.0.0.1",
            },
            [c2s, xmpp_http],
            [],
            f"http://127.0.0.1:{xmpp_http}/health",
            "/health/xmpp",
        ),
    ]
    bridges: list[BridgeRoute] = []
    front = urlparse(s.url)
    ws_tls = front.scheme == "https"
    for i in range(s.bridges):
        server_id = f"jvb{i + 1}"
        private, public, udp = s.port(8080 + i), s.port(9090 + i), s.port(10000 + i)
        bridges.append(BridgeRoute(server_id, public, private))
        procs.append(
            ProcessSpec(
                server_id,
                [py, "-m", "services.bridge"],
                {
                    **common,
                    **xmpp_client,
                    "JVB_AUTH_USER": "jvb",
                    "JVB_AUTH_PASSWORD": s.jvb_password,
                    "JVB_WS_SERVER_ID": server_id,
                    "JVB_WS_DOMAIN": front.netloc,
                    "JVB_WS_TLS": str(ws_tls).lower(),
                    "JVB_PORT": str(udp),
                    "JVB_ADVERTISE_IPS": s.advertise_ips,
                    "JVB_COLIBRI_HOST": "127.0.0.1",
                    "JVB_COLIBRI_PORT": str(private),
                    "JVB_PUBLIC_PORT": str(public),
                    "JVB_BREWERY_MUC": "jvbbrewery",
                },
                [private, public],
                [udp],
                f"http://127.0.0.1:{private}/about/health",
                f"/health/bridge/{server_id}",
            )
        )
    procs.append(
        ProcessSpec(
            "focus",
            [py, "-m", "services.focus"],
            {
                **common,
                **xmpp_client,
                "JICOFO_AUTH_USER": "focus",
                "JICOFO_AUTH_PASSWORD": s.focus_password,
                "JIGASI_XMPP_USER": "jigasi",
                "JICOFO_HTTP_HOST": "127.0.0.1",
                "JICOFO_HTTP_PORT": str(focus_http),
                **public_auth,
                "JVB_BREWERY_MUC": "jvbbrewery",
                # also published by each bridge in its brewery stats; this covers older bridges
                "JICOFO_BRIDGE_COLIBRI_URLS": ",".join(
                    f"{b.server_id}=http://127.0.0.1:{b.private_port}" for b in bridges
                ),
            },
            [focus_http],
            [],
            f"http://127.0.0.1:{focus_http}/about/health",
            "/health/focus",
        )
    )
    recorder_http = s.port(8300)
    procs.append(
        ProcessSpec(
            "recorder",
            [py, "-m", "services.recorder"],
            {
                **common,
                **xmpp_client,
                "JIBRI_XMPP_USER": "jibri",
                "JIBRI_XMPP_PASSWORD": s.recorder_password,
                "JIBRI_BREWERY_MUC": "jibribrewery",
                "JIBRI_INSTANCE_ID": "recorder1",
                "JIBRI_RECORDING_DIR": str(s.run_dir / "recordings"),
                # the local bridges advertise 127.0.0.1: the recorder must offer it too
                "RECORDER_ICE_HOST_ADDRESSES": "127.0.0.1",
                "RECORDER_HTTP_HOST": "127.0.0.1",
                "RECORDER_HTTP_PORT": str(recorder_http),
                # each recording's bridge channel straight to its bridge's public port on
                # loopback, rather than through the front door (its certificate may be self-signed)
                "RECORDER_BRIDGE_CHANNEL_ORIGIN": ",".join(
                    f"{b.server_id}=ws://127.0.0.1:{b.public_port}" for b in bridges
                ),
            },
            [recorder_http],
            [],
            f"http://127.0.0.1:{recorder_http}/health",
            "/health/recorder",
        )
    )
    sip_port, sip_ws, sip_http = s.port(5060), s.port(8401), s.port(8400)
    procs.append(
        ProcessSpec(
            "sip",
            [py, "-m", "services.sip"],
            {
                **common,
                **xmpp_client,
                "SIP_PORT": str(sip_port),
                "SIP_UDP_HOST": "127.0.0.1",
                "SIP_TCP_HOST": "127.0.0.1",
                "SIP_WS_HOST": "127.0.0.1",
                "SIP_WS_PORT": str(sip_ws),
                "SIP_HTTP_HOST": "127.0.0.1",
                "SIP_HTTP_PORT": str(sip_http),
                "SIP_ACCOUNTS": s.sip_accounts,
                "JIGASI_XMPP_USER": "jigasi",
                "JIGASI_XMPP_PASSWORD": s.gateway_password,
                # the local bridges advertise 127.0.0.1: the gateway must offer it too
                "SIP_ICE_HOST_ADDRESSES": "127.0.0.1",
                "SIP_RTP_HOST": "127.0.0.1",
            },
            [sip_http, sip_ws, sip_port],
            [sip_port],
            f"http://127.0.0.1:{sip_http}/health",
            "/health/sip",
        )
    )
    procs.append(
        ProcessSpec(
            "web",
            [py, "-m", "services.web"],
            {**common, **public_auth, "WEB_HTTP_HOST": "127.0.0.1", "WEB_HTTP_PORT": str(web_http)},
            [web_http],
            [],
            f"http://127.0.0.1:{web_http}/health",
            "/health/web",
        )
    )
    if s.turn:
        procs.append(
            ProcessSpec(
                "turn",
                [py, "-m", "services.turn"],
                {
                    "TURN_CREDENTIALS": s.turn_secret,
                    "TURN_REALM": s.xmpp_domain,
                    "TURN_PORT": str(turn_port),
                    "TURN_LISTEN_IPS": "127.0.0.1",
                    "TURN_RELAY_PORTS": f"{s.turn_relay_ports[0]}-{s.turn_relay_ports[1]}",
                    # the bridges' advertised addresses: the only private ones the relay may reach
                    "TURN_ALLOWED_PEER_IPS": s.advertise_ips,
                    "TURN_RUN_DIR": str(s.run_dir / "turn"),
                },
                [turn_port],
                [turn_port],
                f"stun:127.0.0.1:{turn_port}",
                "",
            )
        )
    nginx_conf = s.run_dir / "nginx" / "nginx.conf"
    procs.append(
        ProcessSpec(
            "nginx",
            [
                s.nginx_binary,
                "-e",
                "stderr",
                "-p",
                str(s.run_dir / "nginx"),
                "-c",
                str(nginx_conf),
                "-g",
                "daemon off;",
            ],
            {},
            [s.front_port],
            [],
            f"http://127.0.0.1:{s.front_port}/nginx-health",
            "/nginx-health",
        )
    )
    return StackPlan(s, procs, bridges)


STATE_FILE = "stack.json"
"""Written by ``./parley up`` into its run directory: how ``./parley ws|stats|console`` find the
running services' private HTTP APIs."""


def service_kind(spec: ProcessSpec) -> str:
    """``xmpp``, ``bridge``, ``focus``, ``recorder``, ``web``, ``sip``...: the ``services.<kind>`` module run."""
    for i, arg in enumerate(spec.argv[:-1]):
        if arg == "-m" and spec.argv[i + 1].startswith("services."):
            return spec.argv[i + 1].split(".")[1]
    return spec.name


def stack_state(plan: StackPlan) -> dict[str, object]:
    """Each service's private HTTP API (the base of its health URL), for the operator's tools."""
    services = []
    for spec in plan.processes:
        url = urlparse(spec.health_url)
        if url.scheme != "http" or spec.name == "nginx":
            continue
        services.append({"name": spec.name, "kind": service_kind(spec), "api": f"http://{url.netloc}"})
    return {"front": plan.settings.url, "services": services}


def _bridge_locations(bridges: list[BridgeRoute]) -> str:
    """jitsi-videobridge's doc/web-sockets.md shape: one location per bridge server id, WebSocket upgrade, tcp_nodelay.

    Each is a prefix location proxied without a URI part, so nginx passes the request line as the
    client sent it (the conference and endpoint ids stay percent-encoded; a regex capture would
    hand the bridge decoded bytes). Any other ``/colibri-ws/…`` is no bridge of ours: 404, not the
    web page."""
    out = []
    for b in bridges:
        out.append(f"""
        # Colibri WebSockets of bridge {b.server_id}
        location ^~ /colibri-ws/{b.server_id}/ {{
            proxy_pass http://127.0.0.1:{b.public_port};
            include {{{{ws_proxy}}}};
        }}
        location = /health/bridge/{b.server_id} {{
            proxy_pass http://127.0.0.1:{b.public_port}/about/health;
        }}""")
    out.append("""
        # a server id no bridge here has
        location ^~ /colibri-ws/ { return 404; }""")
    return "\n".join(out)


def render_nginx_config(plan: StackPlan) -> str:
    s = plan.settings
    by_name = {p.name: p for p in plan.processes}
    nginx_dir = s.run_dir / "nginx"
    values = {
        "listen_directives": f"listen 127.0.0.1:{s.front_port};",
        "prefix": str(nginx_dir),
        "xmpp_http": f"127.0.0.1:{by_name['xmpp'].tcp_ports[1]}",
        "focus_http": f"127.0.0.1:{by_name['focus'].tcp_ports[0]}",
        "web_http": f"127.0.0.1:{by_name['web'].tcp_ports[0]}",
        "sip_http": f"127.0.0.1:{by_name['sip'].tcp_ports[0]}",
        "sip_ws": f"127.0.0.1:{by_name['sip'].tcp_ports[1]}",
        "bridge_locations": _bridge_locations(plan.bridges),
        "ws_proxy": str(REPO / "nginx" / "ws-proxy.conf"),
        "mime_types": "/etc/nginx/mime.types",
    }
    return fill_template(NGINX_TEMPLATE.read_text(), values)


def fill_template(text: str, values: dict[str, str]) -> str:
    """Replace every double-braced name; an unknown one left over is an error."""
    # two passes: bridge locations themselves refer to {{ws_proxy}}
    for _ in range(2):
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        start = text.index("{{")
        raise ValueError(f"nginx template has an unknown placeholder near: {text[start : start + 40]!r}")
    return text
