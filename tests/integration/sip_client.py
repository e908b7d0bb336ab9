"""A raw SIP client for tests: sends exactly the bytes a test wants over UDP, TCP or WebSocket
and reads what comes back, and a gateway process (``python -m services.sip``) on free ports."""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from services.sip import digest
from services.sip.message import SipMessage, SipParseError, StreamFramer, parse
from tests.integration.harness import ServiceProcess, free_port, free_tcp_udp_port

DOMAIN = "meet.jitsi"
ACCOUNTS = "alice:alice-secret,bob:bob-secret"


def gateway_process(extra_env: dict[str, str] | None = None) -> tuple[ServiceProcess, dict[str, int]]:
    ports = {"sip": free_tcp_udp_port(), "ws": free_port(), "http": free_port()}
    env = {
        "XMPP_DOMAIN": DOMAIN,
        "SIP_ACCOUNTS": ACCOUNTS,
        "SIP_PORT": str(ports["sip"]),
        "SIP_UDP_HOST": "127.0.0.1",
        "SIP_TCP_HOST": "127.0.0.1",
        "SIP_WS_PORT": str(ports["ws"]),
        "SIP_HTTP_PORT": str(ports["http"]),
        "SIP_ICE_HOST_ADDRESSES": "127.0.0.1",
        "SIP_RTP_HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    proc = ServiceProcess.python_module("sip", "services.sip", env,
                                        health_url=f"http://127.0.0.1:{ports['http']}/health")
    return proc, ports


def request(method: str, uri: str, *, transport: str = "UDP", host: str = "127.0.0.1:5999",
            call_id: str | None = None, cseq: int = 1, from_user: str = "alice", from_tag: str | None = None,
            to: str | None = None, extra: list[tuple[str, str]] | None = None, body: bytes = b"",
            branch: str | None = None, display: str = "Alice") -> SipMessage:
    msg = SipMessage(method=method, uri=uri)
    msg.add("Via", f"SIP/2.0/{transport} {host};branch={branch or 'z9hG4bK' + secrets.token_hex(6)};rport")
    msg.add("Max-Forwards", "70")
    msg.add("From", f'"{display}" <sip:{from_user}@{DOMAIN}>;tag={from_tag or secrets.token_hex(4)}')
    msg.add("To", to or f"<sip:{from_user}@{DOMAIN}>")
    msg.add("Call-ID", call_id or secrets.token_hex(8))
    msg.add("CSeq", f"{cseq} {method}")
    for k, v in extra or []:
        msg.add(k, v)
    if body:
        msg.add("Content-Type", "application/sdp")
    msg.body = body
    return msg


class SipClient:
    """One transport to the gateway: ``udp``, ``tcp`` or ``ws``."""

    def __init__(self, kind: str, host: str, port: int, *, ws_headers: dict[str, str] | None = None,
                 subprotocols: list[str] | None = None, local_host: str = "127.0.0.1") -> None:
        self.kind = kind
        self.addr = (host, port)
        self.framer = StreamFramer(1 << 20)
        self.pending: list[SipMessage] = []
        self.sock: socket.socket | None = None
        self.ws: ClientConnection | None = None
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((local_host, 0))
        elif kind == "tcp":
            self.sock = socket.create_connection(self.addr, timeout=10, source_address=(local_host, 0))
        else:
            self.ws = connect(f"ws://{host}:{port}/sip-ws", subprotocols=subprotocols or ["sip"],  # type: ignore[arg-type]
                              additional_headers=ws_headers or {}, open_timeout=10)

    @property
    def local(self) -> str:
        if self.sock is not None:
            h, p = self.sock.getsockname()[:2]
            return f"{h}:{p}"
        return "df7jal23ls0d.invalid"

    @property
    def via_transport(self) -> str:
        return {"udp": "UDP", "tcp": "TCP", "ws": "WS"}[self.kind]

    def send_raw(self, data: bytes) -> None:
        if self.kind == "udp":
            assert self.sock is not None
            self.sock.sendto(data, self.addr)
        elif self.kind == "tcp":
            assert self.sock is not None
            self.sock.sendall(data)
        else:
            assert self.ws is not None
            self.ws.send(data.decode("utf-8", "replace"))

    def send(self, msg: SipMessage) -> None:
        self.send_raw(msg.to_bytes())

    def recv(self, timeout: float = 10.0) -> SipMessage | None:
        """The next message, or None when nothing comes within ``timeout`` (or the peer closed)."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                if self.kind == "ws":
                    assert self.ws is not None
                    data = self.ws.recv(timeout=left)
                    return parse(data.encode() if isinstance(data, str) else data, check=False)
                assert self.sock is not None
                self.sock.settimeout(left)
                if self.kind == "udp":
                    data, _ = self.sock.recvfrom(65536)
                    return parse(data, check=False)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.pending.extend(self.framer.feed(chunk, check=False))
                if self.pending:
                    return self.pending.pop(0)
            except TimeoutError:
                return None
            except (SipParseError, OSError, Exception) as exc:  # closed
                if type(exc).__name__ in ("ConnectionClosedOK", "ConnectionClosedError", "ConnectionClosed"):
                    return None
                raise

    def recv_final(self, timeout: float = 10.0) -> SipMessage | None:
        """Skip provisional responses."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None or msg.is_request or msg.status >= 200:
                return msg

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the gateway closed this stream connection within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.kind == "ws":
                    assert self.ws is not None
                    self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
                else:
                    assert self.sock is not None
                    self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                    if self.sock.recv(65536) == b"":
                        return True
            except TimeoutError:
                return False
            except Exception:
                return True
        return False

    def register(self, user: str, password: str, *, expires: int = 300,
                 contact_params: str = "") -> SipMessage | None:
        call_id = secrets.token_hex(8)
        contact = f"<sip:{user}@{self.local};transport={self.kind}>{contact_params}"
        base: list[tuple[str, str]] = [("Contact", contact), ("Expires", str(expires))]
        first = request("REGISTER", f"sip:{DOMAIN}", transport=self.via_transport, host=self.local,
                        call_id=call_id, from_user=user, extra=base)
        self.send(first)
        challenge = self.recv_final()
        if challenge is None or challenge.status != 401:
            return challenge
        auth = digest.answer(challenge.get("WWW-Authenticate") or "", user, password, "REGISTER", f"sip:{DOMAIN}")
        second = request("REGISTER", f"sip:{DOMAIN}", transport=self.via_transport, host=self.local,
                         call_id=call_id, cseq=2, from_user=user, extra=[*base, ("Authorization", auth)])
        self.send(second)
        return self.recv_final()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.ws is not None:
                self.ws.close()
            if self.sock is not None:
                self.sock.close()


def get_json(port: int, path: str) -> Any:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).json()
