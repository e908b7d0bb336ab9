"""Shared pieces of the hostile-guest regression suite: one stack started the way a user starts it
(``./parley up``: nginx in front, broker, focus, one bridge, web), and a raw XMPP-over-WebSocket
client that goes through nginx like a browser would, but sends whatever an attacker wants."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.integration.browser import LauncherStack

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
DOMAIN = "meet.jitsi"
MUC = f"muc.{DOMAIN}"
FOCUS_NS = "http://jitsi.org/protocol/focus"


@dataclass
class Stack:
    """A running launcher stack: ``front`` is nginx; the other ports follow the launcher's offset."""

    launcher: LauncherStack

    @property
    def front(self) -> str:
        return self.launcher.front

    @property
    def offset(self) -> int:
        return int(self.front.rsplit(":", 1)[1]) - 8000

    @property
    def ws_url(self) -> str:
        return self.front.replace("http://", "ws://") + "/xmpp-websocket"

    @property
    def c2s_port(self) -> int:
        return 5222 + self.offset

    @property
    def focus_http(self) -> str:
        return f"http://127.0.0.1:{8888 + self.offset}"

    def log(self) -> str:
        return self.launcher.log()

    def pid_listening(self, port: int) -> int:
        """The process listening on a loopback TCP port of this stack."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        inodes.add(f"socket:[{fields[9]}]")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                for fd in (entry / "fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in inodes:
                            return int(entry.name)
        raise LookupError(f"nothing listens on port {port}")

    @property
    def xmpp_pid(self) -> int:
        return self.pid_listening(self.c2s_port)

    def conferences(self) -> list[dict]:
        return httpx.get(f"{self.focus_http}/conferences", timeout=5).json()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(pid)


def tracebacks(log: str) -> int:
    return log.count("Traceback (most recent call last)")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("security-stack") / "run"
    launcher = LauncherStack(run_dir, bridges=1).start()
    try:
        yield Stack(launcher)
    finally:
        launcher.stop()


class WsGuest:
    """An anonymous XMPP guest over ``/xmpp-websocket`` through nginx, frame by frame."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.ws: ClientConnection = connect(
            url, subprotocols=["xmpp"], additional_headers=headers or {}, open_timeout=10, max_size=2**22
        ).__enter__()  # type: ignore[list-item]
        self.jid = ""
        self.seen: list[str] = []

    def send(self, frame: str) -> None:
        self.ws.send(frame)

    def recv_until(self, needle: str | re.Pattern[str], timeout: float = 10.0) -> str:
        """The first frame (already received or new) containing ``needle``."""
        match = (lambda f: needle in f) if isinstance(needle, str) else (lambda f: needle.search(f))
        for i, frame in enumerate(self.seen):
            if match(frame):
                del self.seen[i]
                return frame
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} never came; last frames {self.seen[-5:]}")
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            text = frame if isinstance(frame, str) else frame.decode(errors="replace")
            if match(text):
                return text
            self.seen.append(text)

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    frame = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    continue
                self.seen.append(frame if isinstance(frame, str) else frame.decode(errors="replace"))
        except ConnectionClosed:
            return True
        return False

    def open(self, host: str = DOMAIN) -> str:
        self.send(f"<open xmlns='{FRAMING}' to='{host}' version='1.0'/>")
        return self.recv_until("features")

    def login(self) -> WsGuest:
        self.open()
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        self.recv_until("success")
        self.open()
        self.send(
            "<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
        )
        bound = self.recv_until("<jid>")
        self.jid = bound.split("<jid>")[1].split("</jid>")[0]
        return self

    def ping(self, ident: str) -> None:
        self.send(
            f"<iq xmlns='jabber:client' type='get' id='{ident}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        assert "type='result'" in self.recv_until(f"id='{ident}'")

    def request_conference(self, room: str) -> None:
        """Ask the focus for ``room`` (it creates the MUC room), like the web client does."""
        ident = uuid.uuid4().hex[:8]
        self.send(
            f"<iq xmlns='jabber:client' type='set' id='{ident}' to='focus.{DOMAIN}'>"
            f"<conference xmlns='{FOCUS_NS}' room='{room}@{MUC}' machine-uid='{ident}'/></iq>"
        )
        reply = self.recv_until(f"id='{ident}'", timeout=20)
        assert "type='result'" in reply, reply

    def join(self, room: str, nick: str, extra: str = "") -> str:
        self.send(
            f"<presence xmlns='jabber:client' to='{room}@{MUC}/{nick}'>"
            f"<x xmlns='http://jabber.org/protocol/muc'/>{extra}</presence>"
        )
        return self.recv_until(re.compile(r"code='110'|type='error'"))

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


def raw_tcp(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)
