"""``python -m services.turn``: write ``turnserver.conf`` from the environment and exec coturn."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys

from services.turn.config import TurnConfigError, TurnSettings, render_turnserver_conf


def main() -> int:
    try:
        settings = TurnSettings.from_env(os.environ)
    except TurnConfigError as exc:
        print(f"turn: {exc}", file=sys.stderr)
        return 2
    if settings.tls_cert and not (
        os.path.exists(settings.tls_cert) and os.path.exists(str(settings.tls_key))
    ):
        # compose points at nginx's certificate, which an operator may not have installed yet
        print(f"turn: no certificate at {settings.tls_cert}; TURN over TLS is off", file=sys.stderr)
        settings = dataclasses.replace(settings, tls_cert=None, tls_key=None)
    binary = os.environ.get("TURN_BINARY") or shutil.which("turnserver") or "/usr/bin/turnserver"
    if not os.path.exists(binary):
        print(f"turn: {binary} not found (apt-get install coturn)", file=sys.stderr)
        return 2
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    conf = settings.run_dir / "turnserver.conf"
    # the file holds the shared secret
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_turnserver_conf(settings))
    mode = "udp+tcp" + (f", tls {settings.tls_port}" if settings.tls else "")
    print(
        f"turn: coturn on port {settings.port} ({mode}), relay ports "
        f"{settings.relay_ports[0]}-{settings.relay_ports[1]}, allowed peers "
        f"{','.join(settings.allowed_peer_ips) or 'public addresses only'}",
        flush=True,
    )
    os.execv(binary, [binary, "-c", str(conf)])
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
