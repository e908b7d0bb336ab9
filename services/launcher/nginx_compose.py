"""Renders the front door's config inside the nginx image (docker compose).

Same template as the local launcher; differences: nginx listens on 80 (and 443 when a certificate is
mounted), the other services are on 127.0.0.1 ports given by environment variables, and bridges are
routed dynamically: a bridge's server id ends with its public HTTP port (``<hostname>-<port>``, see
docker-compose.yml), so ``/colibri-ws/<host>-<port>/…`` goes to ``127.0.0.1:<port>`` whatever the
number of bridges (``docker compose up --scale bridge=N``).

Usage: ``python -m services.launcher.nginx_compose OUTPUT`` (environment: NGINX_HTTP_PORT,
NGINX_HTTPS_PORT, TLS_CERT, TLS_KEY, XMPP_HTTP, FOCUS_HTTP, WEB_HTTP, NGINX_PREFIX).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from services.launcher.plan import NGINX_TEMPLATE, REPO, fill_template

DYNAMIC_BRIDGES = r"""
        # Colibri WebSockets of every bridge: the server id's last part is its public port
        location ~ "^/colibri-ws/([A-Za-z0-9.-]+-(9[0-9]{3}))/(.*)$" {
            proxy_pass http://127.0.0.1:$2/colibri-ws/$1/$3$is_args$args;
            include {{ws_proxy}};
        }
        location ~ "^/health/bridge/[A-Za-z0-9.-]+-(9[0-9]{3})$" {
            proxy_pass http://127.0.0.1:$1/about/health;
        }"""


def render(env: Mapping[str, str]) -> str:
    http_port = env.get("NGINX_HTTP_PORT", "80")
    listen = [f"listen {http_port};", f"listen [::]:{http_port};"]
    cert, key = env.get("TLS_CERT", ""), env.get("TLS_KEY", "")
    if cert and key and Path(cert).exists() and Path(key).exists():
        https = env.get("NGINX_HTTPS_PORT", "443")
        listen += [
            f"listen {https} ssl;",
            f"listen [::]:{https} ssl;",
            "http2 on;",
            f"ssl_certificate {cert};",
            f"ssl_certificate_key {key};",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            'add_header Strict-Transport-Security "max-age=63072000" always;',
        ]
    values = {
        "listen_directives": "\n        ".join(listen),
        "prefix": env.get("NGINX_PREFIX", "/var/lib/parley-nginx"),
        "xmpp_http": env.get("XMPP_HTTP", "127.0.0.1:5280"),
        "focus_http": env.get("FOCUS_HTTP", "127.0.0.1:8888"),
        "web_http": env.get("WEB_HTTP", "127.0.0.1:8100"),
        "bridge_locations": DYNAMIC_BRIDGES,
        "ws_proxy": str(REPO / "nginx" / "ws-proxy.conf"),
        "mime_types": "/etc/nginx/mime.types",
    }
    return fill_template(NGINX_TEMPLATE.read_text(), values)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    prefix = Path(os.environ.get("NGINX_PREFIX", "/var/lib/parley-nginx"))
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    out.write_text(render(os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
