"""A minimal raw-socket XMPP client for tests that must send what no library would send."""

from __future__ import annotations

import base64
import socket

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
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        self.expect("<success")
        self.open()
        self.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        out = self.expect("</iq>")
        self.jid = out.split("<jid>")[1].split("</jid>")[0]
        return self

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
