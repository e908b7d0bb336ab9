"""``python -m services.launcher.healthcheck URL``: exit 0 when URL answers 2xx within 3 s, or,
for a ``stun:host:port`` URL (coturn), when a STUN Binding request (RFC 8489) is answered.

The containers' healthcheck (docker-compose.yml): a module with one plain argument, which every
engine runs as given. An ``https://`` URL is a local liveness probe of this container's own
listener, so its certificate (possibly the generated self-signed one) is not verified.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import urllib.request

from services.common.stun import binding_request


def check(url: str, timeout: float = 3.0) -> bool:
    if url.startswith("stun:"):
        host, _, port = url[len("stun:") :].rpartition(":")
        try:
            asyncio.run(binding_request((host, int(port)), wait=timeout))
        except Exception as exc:
            print(f"unhealthy: {url}: {exc}", file=sys.stderr)
            return False
        return True
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return 200 <= response.status < 300
    except Exception as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].startswith(("http://", "https://", "stun:")):
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if check(argv[1]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
