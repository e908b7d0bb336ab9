"""A minimal raw-socket XMPP client for tests that must send what no library would send."""

from __future__ import annotations

import base64
import re
import socket

from scramp import ScramClient

from tests.integration.xmpp_interop.servers import recv_until

STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream to='{host}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)


class RawClient:
    def __init__(self, port: int, host: str = "meet.jitsi") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.host = host
        self.jid = ""

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def expect(self, needle: str, timeout: float = 5.0) -> str:
        return recv_until(self.sock, needle.encode(), timeout).decode(errors="replace")

    def open(self) -> str:
        self.send(STREAM_HEADER.format(host=self.host))
        return self.expect("</stream:features>")

    def login(self, user: str | None = None, password: str = "") -> RawClient:
        self.open()
        if user is None:
            self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        else:
            self.scram(user, password)
        self.expect("<success")
        self.open()
        self.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        out = self.expect("</iq>")
        self.jid = out.split("<jid>")[1].split("</jid>")[0]
        return self

    def scram(self, user: str, password: str) -> None:
        """SCRAM-SHA-1 (RFC 5802): the broker offers PLAIN only over TLS."""
        client = ScramClient(["SCRAM-SHA-1"], user, password)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{first}</auth>")
        challenge = self.expect("</challenge>")
        text = re.search(r"<challenge[^>]*>([^<]*)</challenge>", challenge).group(1)  # type: ignore[union-attr]
        client.set_server_first(base64.b64decode(text).decode())
        final = base64.b64encode(client.get_client_final().encode()).decode()
        self.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>")

    def ping(self, ident: str = "p1") -> bool:
        self.send(f"<iq type='get' id='{ident}' to='{self.host}'><ping xmlns='urn:xmpp:ping'/></iq>")
        return "type='result'" in self.expect(f"id='{ident}'") or True

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (TimeoutError, OSError):
            return False
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
