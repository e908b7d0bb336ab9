"""STARTTLS is offered on c2s when a certificate is configured; slixmpp upgrades and logs in."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.xmpp_interop.raw import RawClient
from tests.integration.xmpp_interop.servers import AUTH_DOMAIN, FOCUS_PASSWORD, start_parley
from tests.integration.xmpp_interop.slix import Client


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meet.jitsi")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("meet.jitsi"), x509.DNSName(AUTH_DOMAIN)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_broker():
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        conf = Path(tmp) / "xmpp.conf"
        conf.write_text(f'xmpp.c2s {{ tls-certificate = "{cert}", tls-key = "{key}" }}\n')
        proc, endpoint = start_parley("xmpp-tls", XMPP_CONFIG=str(conf))
        try:
            yield endpoint
        finally:
            proc.stop()


def test_starttls_is_offered(tls_broker):
    client = RawClient(tls_broker.c2s_port, AUTH_DOMAIN)
    try:
        features = client.open()
        assert "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" in features
    finally:
        client.close()


async def test_slixmpp_upgrades_with_starttls_and_logs_in(tls_broker):
    client = Client(f"focus@{AUTH_DOMAIN}/focus", FOCUS_PASSWORD)
    client.enable_starttls = True
    client.enable_plaintext = False
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = ssl.CERT_NONE
    client.connect("127.0.0.1", tls_broker.c2s_port)
    try:
        await asyncio.wait_for(client.online.wait(), 10)
        assert client.transport.get_extra_info("ssl_object") is not None
        assert client.boundjid.full == f"focus@{AUTH_DOMAIN}/focus"
    finally:
        client.disconnect()
