"""Debian's Kamailio with its websocket module (``tests/integration/kamailio/kamailio.cfg``, set
up as the module's admin guide describes) on a loopback port: the reference Parley's WebSocket
admin is compared with. ``kamcmd`` drives its RPCs over a private control socket."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ServiceProcess, free_port, wait_tcp

CONFIG = Path(__file__).with_name("kamailio") / "kamailio.cfg"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"


def require_kamailio() -> None:
    if not (
        Path(KAMAILIO).exists() and Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/websocket.so").exists()
    ):
        pytest.skip(
            "Debian's kamailio and kamailio-websocket-modules are not installed (./parley test installs them)"
        )


class Kamailio:
    def __init__(
        self, *, keepalive_mechanism: int = 1, keepalive_timeout: int = 180, rm_delay_interval: int = 1,
        keepalive_interval: int = 1,
        origin: str = "http://127.0.0.1",
    ) -> None:  # fmt: skip
        require_kamailio()
        self.dir = Path(tempfile.mkdtemp(prefix="parley-kamailio-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.ctl = self.dir / "ctl.sock"
        text = CONFIG.read_text()
        for name, value in {
            "HTTP_PORT": self.port,
            "CTL_SOCKET": self.ctl,
            "KEEPALIVE_MECHANISM": keepalive_mechanism,
            "KEEPALIVE_TIMEOUT": keepalive_timeout,
            "KEEPALIVE_INTERVAL": keepalive_interval,
            "RM_DELAY_INTERVAL": rm_delay_interval,
            "ORIGIN": origin,
        }.items():
            text = text.replace(f"@@{name}@@", str(value))
        assert "@@" not in text
        (self.dir / "kamailio.cfg").write_text(text)
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.process = ServiceProcess(
            "kamailio",
            [
                KAMAILIO,
                "-DD",
                "-E",
                "-f",
                str(self.dir / "kamailio.cfg"),
                "-Y",
                str(self.dir),
                "-w",
                str(self.dir),
            ],
        )

    def __enter__(self) -> Kamailio:
        self.process.start(timeout=120)
        wait_tcp("127.0.0.1", self.port)
        for _ in range(100):
            if self.ctl.exists():
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kamcmd(self, *args: str) -> str:
        out = subprocess.run(
            [KAMCMD, "-s", f"unix:{self.ctl}", *args], capture_output=True, text=True, timeout=20
        )
        return out.stdout + out.stderr

    def dump(self, order: str | None = None) -> dict[str, Any]:
        """``kamcmd ws.dump [order]`` as ``{"connections": [lines], "info": {...}}`` or ``{"error": ...}``."""
        text = self.kamcmd("ws.dump", *([order] if order else []))
        if text.startswith("error"):
            return {"error": text.strip()}
        lines = re.findall(r"^\t\t(\d+: .*)$", text, re.M)
        info = dict(re.findall(r"^\t\t(wscounter|truncated): (\S+)$", text, re.M))
        return {
            "connections": lines,
            "info": {"wscounter": int(info.get("wscounter", 0)), "truncated": info.get("truncated")},
        }
