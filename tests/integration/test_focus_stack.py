"""Process helpers for the focus tests and benchmarks (this module holds no tests).

:class:`Stack` starts, on free loopback ports, the real XMPP broker (``python -m services.xmpp``),
``bridges`` real bridges (``python -m services.bridge``, server ids ``jvb1``, ``jvb2``...), optionally
Debian's ``redis-server``, and the focus (``python -m services.focus``), all with the harness, and
makes :class:`~tests.integration.participant.JingleParticipant` clients for them. The focus is
given no bridge URLs: it learns each bridge's Colibri URL from its brewery presence.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import REPO, ServiceProcess, free_port, free_tcp_udp_port, wait_tcp
from tests.integration.participant import JingleParticipant, allow_loopback_ice

DOMAIN = "meet.jitsi"
AUTH_DOMAIN = f"auth.{DOMAIN}"
MUC_DOMAIN = f"muc.{DOMAIN}"
INTERNAL_MUC_DOMAIN = f"internal-muc.{DOMAIN}"
FOCUS_PASSWORD = "focus-test-secret"
JVB_PASSWORD = "jvb-test-secret"

BRIDGE_MAIN = REPO / "services" / "bridge" / "__main__.py"
XMPP_MAIN = REPO / "services" / "xmpp" / "__main__.py"


# Test bridges free an empty conference 2 s after its last Colibri request (jvb: 60 s), so a test
# can see "the last one out ends the conference on the bridge" without waiting a minute.
BRIDGE_CONFIG = """
videobridge {
  colibri { conference-idle-timeout = 2 seconds }
}
"""


def bridge_missing() -> str | None:
    """Why bridges cannot run in this checkout, or None."""
    if not BRIDGE_MAIN.exists():
        return (
            "the bridge service (python -m services.bridge: Colibri REST + brewery) is not in this checkout"
        )
    return None


def xmpp_names() -> dict[str, str]:
    return {
        "XMPP_DOMAIN": DOMAIN,
        "XMPP_AUTH_DOMAIN": AUTH_DOMAIN,
        "XMPP_MUC_DOMAIN": MUC_DOMAIN,
        "XMPP_INTERNAL_MUC_DOMAIN": INTERNAL_MUC_DOMAIN,
        "JICOFO_AUTH_PASSWORD": FOCUS_PASSWORD,
        "JVB_AUTH_PASSWORD": JVB_PASSWORD,
        "LOG_LEVEL": "INFO",
    }


class RedisServer:
    """Debian's redis-server on a free port, no persistence, in a temporary directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="parley-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_tcp("127.0.0.1", self.port, 10)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Stack:
    repo = REPO

    def __init__(
        self,
        bridges: int = 2,
        *,
        redis: bool = False,
        focus_env: dict[str, str] | None = None,
        xmpp_env: dict[str, str] | None = None,
    ) -> None:
        self.n_bridges = bridges
        self.with_redis = redis
        self.focus_env = focus_env or {}
        self.xmpp_env = xmpp_env or {}
        self.xmpp: ServiceProcess | None = None
        self.bridges: dict[str, ServiceProcess] = {}
        self.bridge_ports: dict[str, dict[str, int]] = {}
        self.focus: ServiceProcess | None = None
        self.redis: RedisServer | None = None
        self.c2s_port = 0
        self.xmpp_http = 0
        self.focus_http = 0
        self._participants: list[JingleParticipant] = []
        self.bridge_config: Path | None = None

    # ------------------------------------------------------------------ processes
    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        allow_loopback_ice()
        if self.with_redis:
            self.redis = RedisServer().start()
        self.c2s_port, self.xmpp_http = free_port(), free_port()
        self.bridge_config = Path(tempfile.mkstemp(prefix="parley-jvb-", suffix=".conf")[1])
        self.bridge_config.write_text(BRIDGE_CONFIG)
        self.start_xmpp()
        server_ids = [f"jvb{i + 1}" for i in range(self.n_bridges)]
        for server_id in server_ids:
            self._ports(server_id)
        # bridges and the focus start side by side: the focus discovers bridges from the brewery
        with ThreadPoolExecutor(max_workers=len(server_ids) + 1) as pool:
            starts = [pool.submit(self.start_bridge, sid) for sid in server_ids] + [
                pool.submit(self.start_focus)
            ]
            for started in starts:
                started.result()
        if self.n_bridges:
            self.wait_bridges(set(self.bridges))

    def _ports(self, server_id: str) -> dict[str, int]:
        if server_id not in self.bridge_ports:
            self.bridge_ports[server_id] = {
                "colibri": free_port(),
                "public": free_port(),
                "udp": free_tcp_udp_port(),
            }
        return self.bridge_ports[server_id]

    def start_xmpp(self) -> ServiceProcess:
        env = {**xmpp_names(), "XMPP_C2S_PORT": str(self.c2s_port), "XMPP_HTTP_PORT": str(self.xmpp_http),
               "XMPP_BIND_ADDRESS": "127.0.0.1", **self.xmpp_env}  # fmt: skip
        url = f"http://127.0.0.1:{self.xmpp_http}/health"
        self.xmpp = ServiceProcess.python_module("xmpp", "services.xmpp", env, health_url=url)
        self.xmpp.start(timeout=60)  # a loaded machine starts it slowly
        return self.xmpp

    def start_bridge(self, server_id: str) -> ServiceProcess:
        reason = bridge_missing()
        if reason:
            raise RuntimeError(reason)
        ports = self._ports(server_id)
        env = {
            **xmpp_names(),
            "XMPP_SERVER": "127.0.0.1",
            "XMPP_PORT": str(self.c2s_port),
            "JVB_AUTH_USER": "jvb",
            "JVB_WS_SERVER_ID": server_id,
            "JVB_WS_DOMAIN": "127.0.0.1:1",
            "JVB_WS_TLS": "false",
            "JVB_PORT": str(ports["udp"]),
            "JVB_ADVERTISE_IPS": "127.0.0.1",
            "JVB_COLIBRI_HOST": "127.0.0.1",
            "JVB_COLIBRI_PORT": str(ports["colibri"]),
            "JVB_PUBLIC_PORT": str(ports["public"]),
            "JVB_BREWERY_MUC": "jvbbrewery",
            "JVB_CONFIG": str(self.bridge_config),
        }
        proc = ServiceProcess.python_module(
            server_id, "services.bridge", env, health_url=f"{self.colibri_url(server_id)}/about/health"
        )
        proc.start(timeout=30)
        self.bridges[server_id] = proc
        return proc

    def colibri_url(self, server_id: str) -> str:
        return f"http://127.0.0.1:{self.bridge_ports[server_id]['colibri']}"

    def start_focus(self) -> ServiceProcess:
        if not self.focus_http:
            self.focus_http = free_port()
        env = {
            **xmpp_names(),
            "XMPP_SERVER": "127.0.0.1",
            "XMPP_PORT": str(self.c2s_port),
            "JICOFO_HTTP_HOST": "127.0.0.1",
            "JICOFO_HTTP_PORT": str(self.focus_http),
            "JVB_BREWERY_MUC": "jvbbrewery",
            **({"REDIS_URL": self.redis.url} if self.redis else {}),
            **self.focus_env,
        }
        self.focus = ServiceProcess.python_module(
            "focus", "services.focus", env, health_url=f"{self.focus_url}/about/health"
        )
        self.focus.start(timeout=60)
        return self.focus

    def stop(self) -> None:
        for proc in [self.focus, *self.bridges.values(), self.xmpp]:
            if proc is not None:
                proc.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.bridge_config is not None:
            self.bridge_config.unlink(missing_ok=True)

    def logs(self) -> str:
        out = []
        for proc in [self.focus, *self.bridges.values(), self.xmpp]:
            if proc is not None:
                out.append(f"----- {proc.name}\n{proc.log(80)}")
        return "\n".join(out)

    # ------------------------------------------------------------------ focus views
    @property
    def focus_url(self) -> str:
        return f"http://127.0.0.1:{self.focus_http}"

    @property
    def focus_jid(self) -> str:
        return f"focus.{DOMAIN}"  # the broker's client proxy delivers to focus@auth.<domain>/focus

    def get(self, path: str) -> Any:
        return httpx.get(self.focus_url + path, timeout=5).json()

    def conference(self, room: str) -> dict[str, Any] | None:
        return next((c for c in self.get("/conferences") if c["room"] == room), None)

    def participants_of(self, room: str) -> dict[str, str]:
        conf = self.conference(room)
        return {p["endpoint"]: p["state"] for p in conf["participants"]} if conf else {}

    def bridge_of(self, room: str) -> str | None:
        conf = self.conference(room)
        return conf["bridge"] if conf else None

    def wait_bridges(self, expected: set[str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                seen = {b["id"] for b in self.get("/bridges") if b["state"] == "operational"}
                if seen == expected:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"focus does not list bridges {expected}: {self.get('/bridges')}\n{self.logs()}")

    # ------------------------------------------------------------------ participants
    def participant(self, nick: str, **kw: Any) -> JingleParticipant:
        p = JingleParticipant(
            nick, port=self.c2s_port, domain=DOMAIN, muc_domain=MUC_DOMAIN, focus_jid=self.focus_jid, **kw
        )
        self._participants.append(p)
        return p
