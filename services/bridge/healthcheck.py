"""``python -m services.bridge.healthcheck``: exit 0 if this host's bridge answers /about/health.

For container health checks. The private REST port comes from the settings; when they give a
port range (docker compose --scale), from the state file the running bridge wrote with the slot it
took (:data:`services.bridge.config.STATE_FILE`).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

STATE_FILE = Path("/tmp/parley-bridge.json")  # services.bridge.config.STATE_FILE


def private_url() -> str:
    # A port range in the environment (compose): the state file first, as reading the settings
    # imports pydantic and parses HOCON, seconds of CPU on a loaded host, past the engine's
    # healthcheck timeout.
    if "-" in os.environ.get("JVB_COLIBRI_PORT", ""):
        try:
            return str(json.loads(STATE_FILE.read_text())["private_url"])
        except (OSError, ValueError, KeyError):
            pass
    from services.bridge import config

    cfg = config.read()
    host = cfg.videobridge.http_servers.private.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    first, last = cfg.videobridge.http_servers.private.port
    if first == last:
        return f"http://{host}:{first}"
    return str(json.loads(config.STATE_FILE.read_text())["private_url"])


def main() -> int:
    try:
        url = private_url() + "/about/health"
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:
        print(f"bridge unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
