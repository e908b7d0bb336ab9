"""The nginx container's entrypoint (docker compose): certificate, config, then nginx itself.

Same template as the local launcher; differences: nginx listens on 80 and 443 (``HTTP_PORT``,
``HTTPS_PORT``), the other services are on 127.0.0.1 ports given by environment variables, and
bridges are routed dynamically: a bridge's server id ends with its public HTTP port
(``<hostname>-<port>``, see docker-compose.yml), so ``/colibri-ws/<host>-<port>/…`` goes to
``127.0.0.1:<port>`` whatever the number of bridges (``docker compose up --scale bridge=N``).

HTTPS is always served. The certificate is the operator's when ``TLS_CERT`` and ``TLS_KEY`` name
existing files (``./config/tls/cert.pem`` and ``key.pem`` mounted at ``/config/tls``); otherwise a
self-signed one for ``PUBLIC_URL``'s host is generated on first start into ``TLS_GENERATED_DIR``
(a volume, so it survives restarts). ``ENABLE_HTTP_REDIRECT=1`` sends plain-HTTP requests to HTTPS.

Usage: ``python -m services.launcher.nginx_compose [--exec] [OUTPUT]``: renders the config to
OUTPUT (default ``/etc/nginx/parley.conf``); with ``--exec`` then replaces itself with nginx.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from services.launcher.plan import NGINX_TEMPLATE, REPO, fill_template

DYNAMIC_BRIDGES = r"""
        # Colibri WebSockets of every bridge: the server id's last part is its public port, one of
        # the bridges' range (JVB_PUBLIC_PORT) and no other. The request line goes on as the client
        # sent it ($request_uri): conference and endpoint ids stay percent-encoded, where a regex
        # capture would hand the bridge decoded bytes.
        location ~ "^/colibri-ws/[A-Za-z0-9.-]+-(@PORTS@)/" {
            proxy_pass http://127.0.0.1:$1$request_uri;
            include {{ws_proxy}};
        }
        # any other server id is no bridge of ours: 404, not the web page (a plain prefix, so the
        # regular expression above still wins where it matches)
        location /colibri-ws/ { return 404; }
        location ~ "^/health/bridge/[A-Za-z0-9.-]+-(@PORTS@)$" {
            proxy_pass http://127.0.0.1:$1/about/health;
        }"""
MAX_BRIDGE_PORTS = 100


def bridge_ports(spec: str) -> list[int]:
    """The bridges' public ports from ``JVB_PUBLIC_PORT`` (``9090`` or ``9090-9109``)."""
    first, _, last = spec.strip().partition("-")
    low, high = int(first), int(last or first)
    if not (0 < low <= high < 65536) or high - low >= MAX_BRIDGE_PORTS:
        raise ValueError(f"JVB_PUBLIC_PORT: {spec!r} is not a port or a range of at most {MAX_BRIDGE_PORTS}")
    return list(range(low, high + 1))


DEFAULT_OUTPUT = "/etc/nginx/parley.conf"
TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    generated: bool


def public_host(env: Mapping[str, str]) -> str:
    url = env.get("PUBLIC_URL", "") or "https://localhost"
    return urlsplit(url if "://" in url else f"https://{url}").hostname or "localhost"


def tls_files(env: Mapping[str, str]) -> TlsFiles:
    """The operator's certificate when both files exist, else the generated one's paths."""
    cert, key = env.get("TLS_CERT", ""), env.get("TLS_KEY", "")
    if cert and key and Path(cert).is_file() and Path(key).is_file():
        return TlsFiles(Path(cert), Path(key), generated=False)
    generated = Path(env.get("TLS_GENERATED_DIR", "/var/lib/parley-tls"))
    return TlsFiles(generated / "cert.pem", generated / "key.pem", generated=True)


def ensure_certificate(env: Mapping[str, str]) -> TlsFiles:
    """Generate the self-signed certificate once, when the operator gave none."""
    files = tls_files(env)
    if files.generated and not (files.cert.is_file() and files.key.is_file()):
        from services.launcher.tls import self_signed

        host = public_host(env)
        pair = self_signed(host)
        files.cert.parent.mkdir(parents=True, exist_ok=True)
        key_tmp = files.key.with_suffix(".tmp")
        key_tmp.touch(mode=0o600)
        key_tmp.write_bytes(pair.key_pem)
        key_tmp.replace(files.key)
        files.cert.write_bytes(pair.cert_pem)
        print(f"nginx: no certificate given; generated a self-signed one for {host} in {files.cert.parent}")
    return files


def render(env: Mapping[str, str], tls: TlsFiles | None = None) -> str:
    http_port = env.get("HTTP_PORT") or env.get("NGINX_HTTP_PORT") or "80"
    https_port = env.get("HTTPS_PORT") or env.get("NGINX_HTTPS_PORT") or "443"
    tls = tls or tls_files(env)
    listen = [
        f"listen {http_port};",
        f"listen {https_port} ssl http2;",
        f"ssl_certificate {tls.cert};",
        f"ssl_certificate_key {tls.key};",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_cache shared:parley_tls:4m;",
    ]
    if env.get("ENABLE_IPV6", "1").lower() in TRUE:
        listen[2:2] = [f"listen [::]:{http_port};", f"listen [::]:{https_port} ssl http2;"]
    if env.get("ENABLE_HTTP_REDIRECT", "").lower() in TRUE:
        suffix = "" if https_port == "443" else f":{https_port}"
        listen += [
            'add_header Strict-Transport-Security "max-age=63072000" always;',
            f"if ($scheme = http) {{ return 301 https://$host{suffix}$request_uri; }}",
        ]
    values = {
        "listen_directives": "\n        ".join(listen),
        "prefix": env.get("NGINX_PREFIX", "/var/lib/parley-nginx"),
        "xmpp_http": env.get("XMPP_HTTP", "127.0.0.1:5280"),
        "focus_http": env.get("FOCUS_HTTP", "127.0.0.1:8888"),
        "web_http": env.get("WEB_HTTP", "127.0.0.1:8100"),
        "sip_http": env.get("SIP_HTTP", "127.0.0.1:8400"),
        "sip_ws": env.get("SIP_WS", "127.0.0.1:8401"),
        "bridge_locations": DYNAMIC_BRIDGES.replace(
            "@PORTS@", "|".join(map(str, bridge_ports(env.get("JVB_PUBLIC_PORT", "9090-9109"))))
        ),
        "ws_proxy": str(REPO / "nginx" / "ws-proxy.conf"),
        "mime_types": "/etc/nginx/mime.types",
    }
    return fill_template(NGINX_TEMPLATE.read_text(), values)


def main(argv: list[str]) -> int:
    args = argv[1:]
    do_exec = "--exec" in args
    args = [a for a in args if a != "--exec"]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(args[0] if args else DEFAULT_OUTPUT)
    prefix = Path(os.environ.get("NGINX_PREFIX", "/var/lib/parley-nginx"))
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    try:
        tls = ensure_certificate(os.environ)
        out.write_text(render(os.environ, tls))
    except (ValueError, OSError) as exc:
        print(f"nginx: cannot start: {exc}", file=sys.stderr)
        return 1
    if do_exec:
        sys.stdout.flush()
        nginx = ["nginx", "-p", str(prefix), "-c", str(out), "-e", "stderr", "-g", "daemon off;"]
        os.execvp(nginx[0], nginx)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
