"""slixmpp clients for the interop tests: the library Jicofo-like services in Parley use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import slixmpp
from slixmpp.jid import JID


class Client(slixmpp.ClientXMPP):
    """A plaintext-TCP client (loopback) with MUC, ping and disco; collects what it receives."""

    def __init__(self, jid: str, password: str = "", anonymous: bool = False) -> None:
        kw = {"sasl_mech": "ANONYMOUS"} if anonymous else {}
        # loopback without TLS: allow SCRAM and PLAIN on a plaintext stream (slixmpp refuses by default)
        plugin_config = {"feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}}
        super().__init__(jid, password, plugin_config=plugin_config, **kw)
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        for plugin in ("xep_0030", "xep_0045", "xep_0199"):
            self.register_plugin(plugin)
        self.messages: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.groupchat: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.presences: asyncio.Queue[slixmpp.Presence] = asyncio.Queue()
        self.online = asyncio.Event()
        self.failed = asyncio.Event()
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_auth", lambda *_: self.failed.set())
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("groupchat_message", lambda m: self.groupchat.put_nowait(m))
        self.add_event_handler("presence", lambda p: self.presences.put_nowait(p))
        # the MUC plugin mutes the generic event for rooms it joined; it raises this one instead
        self.add_event_handler("groupchat_presence", lambda p: self.presences.put_nowait(p))

    async def _started(self, _event: object) -> None:
        self.send_presence()
        self.online.set()


@contextlib.asynccontextmanager
async def connected(
    port: int, jid: str, password: str = "", anonymous: bool = False, wait: float = 10.0
) -> AsyncIterator[Client]:
    client = Client(jid, password, anonymous)
    client.connect("127.0.0.1", port)
    online = asyncio.ensure_future(client.online.wait())
    failed = asyncio.ensure_future(client.failed.wait())
    await asyncio.wait({online, failed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    online.cancel()
    failed.cancel()
    if client.failed.is_set() or not client.online.is_set():
        client.disconnect()
        raise ConnectionError(f"{jid}: login failed" if client.failed.is_set() else f"{jid}: no session")
    try:
        yield client
    finally:
        client.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnected, 3)


async def next_matching(queue: asyncio.Queue, pred, wait: float = 5.0):  # type: ignore[no-untyped-def]
    async def loop():  # type: ignore[no-untyped-def]
        while True:
            item = await queue.get()
            if pred(item):
                return item

    return await asyncio.wait_for(loop(), wait)


__all__ = ["JID", "Client", "connected", "next_matching"]
