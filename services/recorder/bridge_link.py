"""A recording's bridge channel: the Colibri WebSocket the bridge offers every endpoint
(docs/protocols.md#colibri-websocket), opened by the recorder as a browser opens it.

* in: ``DominantSpeakerEndpointChangeEvent`` goes to ``on_speaker`` (the ``speaker`` layout);
  other classes are ignored. Every message is parsed by :func:`services.common.bridge_channel.parse`
  (size and depth bounded); one that does not parse is skipped and logged at most every 10 s.
* out: ``ReceiverVideoConstraints`` sized to the composed picture's tiles (:meth:`send_constraints`);
  the latest is sent again after every reconnection, since the bridge forgets a closed socket's.

The URL is the ``web-socket`` of the Jingle offer's transport, which names the bridge's public
address (through the front door). ``origin`` (``recorder.bridge-channel-origin``) replaces its
scheme and host when the recorder reaches the bridges another way (``ws://nginx:80`` inside a
container network, or each bridge's own public port: ``jvb1=ws://127.0.0.1:9090,jvb2=...``); the
path, which says which bridge, conference and endpoint, stays. A lost
socket is opened again after 1, 2, 4 … 60 s, as the web client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from services.common import bridge_channel as bc
from services.common.logging import RateLimitedLogger

log = logging.getLogger("recorder.bridge")
_limited = RateLimitedLogger(log)

MAX_BACKOFF = 60.0


def channel_url(offered: str, origin: str = "") -> str:
    """The URL to open: ``offered`` (``ws``/``wss`` only), its scheme and host replaced by
    ``origin``'s when given. ``origin`` is one base URL for every bridge, or
    ``<server-id>=<base URL>`` pairs separated by commas, one per bridge (as the front door routes
    ``/colibri-ws/<server-id>/``); a bridge without a pair keeps the offered URL. Raises
    ValueError for anything else."""
    parts = urlsplit(offered)
    if parts.scheme not in ("ws", "wss") or not parts.netloc or not parts.path.startswith("/colibri-ws/"):
        raise ValueError(f"not a Colibri WebSocket URL: {offered[:200]!r}")
    if "=" in origin:
        server_id = parts.path.split("/")[2]
        pairs = dict(p.strip().split("=", 1) for p in origin.split(",") if "=" in p)
        origin = pairs.get(server_id, "").strip()
    if origin:
        base = urlsplit(origin)
        scheme = {"http": "ws", "https": "wss"}.get(base.scheme, base.scheme)
        if scheme not in ("ws", "wss") or not base.netloc:
            raise ValueError(f"bad bridge-channel origin: {origin!r}")
        parts = parts._replace(scheme=scheme, netloc=base.netloc)
    return urlunsplit(parts)


class BridgeLink:
    def __init__(self, url: str, on_speaker: Callable[[bc.DominantSpeakerEndpointChangeEvent], None]) -> None:
        self.url = url
        self.on_speaker = on_speaker
        self._constraints: str | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.received = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def send_constraints(self, message: bc.ReceiverVideoConstraints) -> None:
        """Ask for these (now if connected, else on connection); repeats are not sent."""
        text = bc.serialize(message)
        if text != self._constraints:
            self._constraints = text
            self._changed.set()

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with connect(self.url, max_size=bc.MAX_MESSAGE_BYTES, open_timeout=10) as ws:
                    log.info("bridge channel open: %s", self.url.split("?")[0])
                    delay = 1.0
                    self.connected.set()
                    self._changed.set()  # (re)send the latest constraints
                    sender = asyncio.ensure_future(self._sender(ws))
                    try:
                        async for text in ws:
                            self._handle(text)
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError, websockets.WebSocketException):
                            await sender
                _limited.info(("closed", self.url), "bridge channel closed by the bridge; reopening")
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                _limited.warning(("failed", self.url), "bridge channel %s: %s", self.url.split("?")[0], exc)
            finally:
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    async def _sender(self, ws: ClientConnection) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._constraints is not None:
                await ws.send(self._constraints)

    def _handle(self, data: str | bytes) -> None:
        self.received += 1
        try:
            message = bc.parse(data)
        except bc.BridgeChannelError as exc:
            _limited.warning(("bad", self.url), "bridge channel: message skipped: %s", exc)
            return
        if isinstance(message, bc.DominantSpeakerEndpointChangeEvent):
            self.on_speaker(message)
