"""Brewery presence: the bridge announces itself to the focus over XMPP (docs/protocols.md#brewery).

The bridge logs in as ``jvb@auth.<domain>/<server-id>``, joins ``<brewery>@<internal-muc-domain>``
with its server id as nick, and re-sends its presence with a ``<stats/>`` extension
(:mod:`services.common.brewery`) every few seconds. It answers the health-check IQ with an empty
result when healthy and an error otherwise. When the broker goes away it reconnects with an
exponential backoff and joins again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common import brewery
from services.common.xmpp_guard import MAX_STANZA_BYTES, MAX_STANZA_DEPTH, GuardedStreamMixin

log = logging.getLogger("bridge.presence")

MUC_NS = "http://jabber.org/protocol/muc"


class _BrewerClient(GuardedStreamMixin, slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, use_tls: bool) -> None:
        plugin_config = {"feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": not use_tls}}
        super().__init__(jid, password, plugin_config=plugin_config)
        self.enable_direct_tls = False
        self.enable_starttls = use_tls
        self.enable_plaintext = not use_tls


class BreweryPresence:
    """Keeps the bridge's presence in the brewery room, across broker restarts."""

    def __init__(
        self,
        *,
        jid: str,
        password: str,
        host: str,
        port: int,
        room: str,
        nick: str,
        stats: Callable[[], dict[str, Any]],
        healthy: Callable[[], str | None],
        interval: float = 5.0,
        reconnect_min: float = 1.0,
        reconnect_max: float = 30.0,
        use_tls: bool = False,
        max_stanza_depth: int = MAX_STANZA_DEPTH,
        max_stanza_size: int = MAX_STANZA_BYTES,
    ) -> None:
        self.jid, self.password, self.host, self.port = jid, password, host, port
        self.room, self.nick = room, nick
        self.stats, self.healthy = stats, healthy
        self.interval = interval
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.use_tls = use_tls
        self.max_stanza_depth, self.max_stanza_size = max_stanza_depth, max_stanza_size
        self.joined = False
        self.connections = 0
        self._refused_before = 0
        self._client: _BrewerClient | None = None
        self._wake = asyncio.Event()

    def _presence(self, client: _BrewerClient, join: bool) -> Any:
        pres = client.make_presence(pto=f"{self.room}/{self.nick}")
        if join:
            ET.SubElement(pres.xml, f"{{{MUC_NS}}}x")
        pres.xml.append(brewery.encode_stats(self.stats()))
        return pres

    @property
    def stanzas_refused(self) -> int:
        """Stanzas the guarded reader refused or could not handle (services/common/xmpp_guard.py)."""
        current = getattr(self._client, "stanzas_refused", 0) if self._client is not None else 0
        return self._refused_before + current

    def publish_now(self) -> None:
        """Send fresh stats now (e.g. after drain or graceful shutdown changed)."""
        self._wake.set()

    async def run(self) -> None:
        backoff = self.reconnect_min
        while True:
            client = _BrewerClient(f"{self.jid}/{self.nick}", self.password, self.use_tls)
            client.max_stanza_depth, client.max_stanza_bytes = self.max_stanza_depth, self.max_stanza_size
            self._client = client
            session = asyncio.get_running_loop().create_future()
            failed = asyncio.get_running_loop().create_future()

            def on_session(_: Any, fut: asyncio.Future[None] = session) -> None:
                if not fut.done():
                    fut.set_result(None)

            def on_failure(reason: Any, fut: asyncio.Future[str] = failed) -> None:
                if not fut.done():
                    fut.set_result(str(reason))

            client.add_event_handler("session_start", on_session)
            client.add_event_handler("failed_auth", lambda _: on_failure("authentication failed"))
            client.add_event_handler("connection_failed", on_failure)
            client.add_event_handler("disconnected", on_failure)
            client.add_event_handler("presence_error", self._on_presence_error)
            client.add_event_handler("presence", self._on_presence)
            client.register_handler(
                Callback(
                    "brewery healthcheck",
                    MatchXPath(f"{{jabber:client}}iq/{brewery.HEALTHCHECK_TAG}"),
                    lambda iq, c=client: self._on_healthcheck(c, iq),  # type: ignore[misc]
                )
            )
            try:
                client.connect(self.host, self.port)
                done, _ = await asyncio.wait(
                    {session, failed}, timeout=30, return_when=asyncio.FIRST_COMPLETED
                )
                if session not in done:
                    why = failed.result() if failed.done() else "timed out"
                    log.warning(
                        "xmpp login to %s:%d failed (%s); retry in %.0fs", self.host, self.port, why, backoff
                    )
                else:
                    self.connections += 1
                    backoff = self.reconnect_min
                    log.info("xmpp session as %s; joining %s as %s", client.boundjid, self.room, self.nick)
                    await self._publish_loop(client, failed)
                    log.warning(
                        "xmpp connection lost (%s); reconnecting", failed.result() if failed.done() else "?"
                    )
            except asyncio.CancelledError:
                # the bridge is stopping: leave the brewery so the focus stops choosing this bridge
                if self.joined:
                    client.make_presence(pto=f"{self.room}/{self.nick}", ptype="unavailable").send()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(client.disconnect(wait=1.0)), 2)
                raise
            finally:
                self.joined = False
                self._refused_before += getattr(client, "stanzas_refused", 0)
                client.abort()
                self._client = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max)

    async def _publish_loop(self, client: _BrewerClient, failed: asyncio.Future[str]) -> None:
        client.send_presence()  # available to the server itself
        self._presence(client, join=True).send()
        while not failed.done():
            self._wake.clear()
            wake = asyncio.ensure_future(self._wake.wait())
            waiting: list[asyncio.Future[Any]] = [wake, failed]
            await asyncio.wait(waiting, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            if failed.done():
                return
            self._presence(client, join=not self.joined).send()

    def _on_presence(self, pres: Any) -> None:
        if str(pres["from"]) == f"{self.room}/{self.nick}" and pres["type"] != "unavailable":
            if not self.joined:
                log.info("joined brewery %s as %s", self.room, self.nick)
            self.joined = True

    def _on_presence_error(self, pres: Any) -> None:
        if str(pres["from"].bare) == self.room:
            log.error("brewery %s refused our presence: %s", self.room, pres["error"]["condition"])
            self.joined = False

    def _on_healthcheck(self, client: _BrewerClient, iq: Any) -> None:
        if iq["type"] in ("result", "error"):
            return
        if iq["type"] != "get":  # every IQ get/set is answered (RFC 6120 section 8.2.3)
            reply = iq.reply(clear=True)
            reply["type"] = "error"
            reply["error"]["type"] = "modify"
            reply["error"]["condition"] = "bad-request"
            reply["error"]["text"] = "a health check is an IQ get"
            reply.send()
            return
        problem = self.healthy()
        if problem is None:
            iq.reply(clear=True).send()
        else:
            reply = iq.reply(clear=True)
            reply["type"] = "error"
            reply["error"]["type"] = "cancel"
            reply["error"]["condition"] = "internal-server-error"
            reply["error"]["text"] = problem
            reply.send()
