"""The nginx container's entrypoint: HTTPS always, the operator's certificate or a generated one."""

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from services.launcher import nginx_compose
from services.launcher.nginx_compose import bridge_ports, ensure_certificate, public_host, render, tls_files
from services.launcher.plan import REPO


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "NGINX_PREFIX": str(tmp_path / "prefix"),
        "TLS_GENERATED_DIR": str(tmp_path / "generated"),
        "TLS_CERT": str(tmp_path / "given" / "cert.pem"),
        "TLS_KEY": str(tmp_path / "given" / "key.pem"),
        "PUBLIC_URL": "https://meet.example.org",
        **extra,
    }


def test_without_a_certificate_one_is_generated_once_for_the_public_host(tmp_path: Path) -> None:
    e = env(tmp_path)
    files = ensure_certificate(e)
    assert files.generated and files.cert.parent == tmp_path / "generated"
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"meet.example.org", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert files.key.stat().st_mode & 0o077 == 0
    first = files.cert.read_bytes()
    assert ensure_certificate(e).cert.read_bytes() == first  # kept across restarts


def test_a_provided_certificate_replaces_the_generated_one(tmp_path: Path) -> None:
    e = env(tmp_path)
    given = tmp_path / "given"
    given.mkdir()
    (given / "cert.pem").write_text("cert")
    (given / "key.pem").write_text("key")
    files = ensure_certificate(e)
    assert not files.generated and files.cert == given / "cert.pem"
    assert not (tmp_path / "generated").exists()
    assert f"ssl_certificate {given / 'cert.pem'};" in render(e)


def test_https_beside_http_and_the_redirect_when_asked(tmp_path: Path) -> None:
    e = env(tmp_path, HTTP_PORT="8080", HTTPS_PORT="8443", ENABLE_IPV6="0")
    conf = render(e)
    assert "listen 8080;" in conf and "listen 8443 ssl http2;" in conf
    assert "return 301" not in conf
    redirecting = render({**e, "ENABLE_HTTP_REDIRECT": "1"})
    assert "if ($scheme = http) { return 301 https://$host:8443$request_uri; }" in redirecting
    assert "return 301 https://$host$request_uri;" in render(
        {**e, "HTTPS_PORT": "443", "ENABLE_HTTP_REDIRECT": "true"}
    )


def test_bridges_are_routed_by_the_port_in_their_server_id_and_only_those_ports(tmp_path: Path) -> None:
    conf = render(env(tmp_path, JVB_PUBLIC_PORT="9090-9092"))
    assert '"^/colibri-ws/[A-Za-z0-9.-]+-(9090|9091|9092)/"' in conf
    # the request line as the client sent it: ids stay percent-encoded on the way to the bridge
    assert "proxy_pass http://127.0.0.1:$1$request_uri;" in conf
    assert "location /colibri-ws/ { return 404; }" in conf  # any other server id
    assert bridge_ports("9090") == [9090]
    for bad in ("1-99999", "9000-9500", "x"):
        with pytest.raises(ValueError):
            bridge_ports(bad)


def test_public_host() -> None:
    assert public_host({"PUBLIC_URL": "https://meet.example.org:8443/"}) == "meet.example.org"
    assert public_host({}) == "localhost"
    assert tls_files({}).generated


@pytest.mark.peer
@pytest.mark.skipif(not Path("/usr/sbin/nginx").exists(), reason="nginx not installed")
def test_real_nginx_accepts_the_config_with_the_generated_certificate(tmp_path: Path, monkeypatch) -> None:
    e = env(tmp_path, HTTP_PORT="18080", HTTPS_PORT="18443", ENABLE_HTTP_REDIRECT="1", ENABLE_IPV6="0")
    for key, value in e.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "nginx.conf"
    assert nginx_compose.main(["nginx_compose", str(out)]) == 0
    assert shutil.which("nginx") or Path("/usr/sbin/nginx").exists()
    result = subprocess.run(
        ["/usr/sbin/nginx", "-t", "-e", "stderr", "-p", e["NGINX_PREFIX"], "-c", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_a_bad_setting_stops_the_entrypoint_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    for key, value in env(tmp_path, JVB_PUBLIC_PORT="9000-9999").items():
        monkeypatch.setenv(key, value)
    assert nginx_compose.main(["nginx_compose", str(tmp_path / "nginx.conf")]) == 1
    assert "nginx: cannot start: JVB_PUBLIC_PORT: '9000-9999'" in capsys.readouterr().err


@pytest.mark.peer
@pytest.mark.skipif(not Path("/usr/sbin/nginx").exists(), reason="nginx not installed")
def test_real_nginx_passes_encoded_ids_to_the_bridge_and_404s_unknown_server_ids(
    tmp_path: Path, monkeypatch
) -> None:
    import socket
    import threading

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    bridge = socket.socket()
    bridge.bind(("127.0.0.1", 0))
    bridge.listen(1)
    bridge_port = bridge.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = bridge.accept()
        with conn:
            seen.append(conn.recv(4096).split(b"\r\n", 1)[0])
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    http_port = free()
    e = env(tmp_path, HTTP_PORT=str(http_port), HTTPS_PORT=str(free()), ENABLE_HTTP_REDIRECT="0",
            ENABLE_IPV6="0", JVB_PUBLIC_PORT=str(bridge_port))  # fmt: skip
    for key, value in e.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "nginx.conf"
    assert nginx_compose.main(["nginx_compose", str(out)]) == 0
    nginx = subprocess.Popen(
        ["/usr/sbin/nginx", "-e", "stderr", "-p", e["NGINX_PREFIX"], "-c", str(out), "-g", "daemon off;"],
        cwd=REPO,
    )

    def get(path: str) -> bytes:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", http_port), timeout=5) as c:
                    c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                    return c.recv(4096).split(b"\r\n", 1)[0]
            except ConnectionRefusedError:
                import time

                time.sleep(0.05)
        raise AssertionError("nginx did not start")

    try:
        sid = f"host-{bridge_port}"
        assert b" 404 " in get("/colibri-ws/nobody-1/conf/ep?pwd=x")
        assert b" 204 " in get(f"/colibri-ws/{sid}/conf%2F1/a%20b%3Fc?pwd=p%26q")
        assert seen == [f"GET /colibri-ws/{sid}/conf%2F1/a%20b%3Fc?pwd=p%26q HTTP/1.1".encode()]
    finally:
        nginx.terminate()
        nginx.wait(10)
        bridge.close()
