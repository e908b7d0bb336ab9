"""Several broker processes serving one domain, joined through Redis.

Each node keeps, in memory, where the other nodes' sessions and rooms live; Redis holds the shared
truth (hashes ``sessions`` and ``rooms``) and carries changes (an events channel) and traffic
(one channel per node). Routing stays synchronous: the broker asks :meth:`locate` and
:meth:`component_node` from the cache, and outgoing traffic is queued and published in batches by
a writer task.

A node refreshes a key with a short TTL; when a node's key expires, the others forget its
sessions, remove its users from their rooms (occupants leave with an unavailable presence) and
drop its rooms.

Wire: channel ``<prefix>node:<id>`` carries ``D<full-jid>\\n<stanza bytes>`` (deliver to a local
session) and ``S<stanza bytes>`` (route a stanza for a room homed on that node); channel
``<prefix>events`` carries ``bind|unbind|room|unroom <jid> <node>``; a session that logged in with
a token binds with ``bind <jid> <node> <claims json>`` (:meth:`TokenClaims.to_json`), so that the
node homing a room checks the ``room`` claim and stamps the identity of an occupant whose session
is elsewhere (hash ``claims`` keeps them for nodes that start later). The lobby's addresses
(``room@lobby.<domain>``) are served by the node homing ``room@<muc>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from .jid import JID, InvalidJid, parse_jid
from .tokens import TokenClaims
from .xml import Element, XmlStreamError, parse_document

if TYPE_CHECKING:  # pragma: no cover
    from .broker import Broker, Deliverable
    from .config import ClusterConfig
    from .modules.muc import MucService, Room

log = logging.getLogger("xmpp.cluster")

PREFIX = "parley:xmpp:"


class ClusterDirectory:
    """Where other nodes' sessions and rooms live, as told by cluster events. No I/O."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.sessions: dict[JID, str] = {}
        self.by_bare: dict[JID, set[JID]] = {}
        self.room_homes: dict[JID, str] = {}
        self.claims: dict[JID, TokenClaims] = {}  # token claims of other nodes' sessions

    def apply(self, event: str) -> bool:
        """Apply ``bind|unbind|room|unroom <jid> <node>`` (``bind`` may end with the session's
        token claims); False if the event is malformed."""
        try:
            kind, jid_text, rest = event.split(" ", 2)
            jid = parse_jid(jid_text)
            node, _, extra = rest.partition(" ") if kind == "bind" else (rest, "", "")
            claims = TokenClaims.from_json(extra) if extra else None
        except (ValueError, InvalidJid):
            return False
        if node == self.node:
            return True
        if kind == "bind":
            self.sessions[jid] = node
            self.by_bare.setdefault(jid.bare, set()).add(jid)
            if claims is not None:
                self.claims[jid] = claims
            else:
                self.claims.pop(jid, None)
        elif kind == "unbind":
            if self.sessions.get(jid) == node:
                self.forget(jid)
        elif kind == "room":
            self.room_homes[jid] = node
        elif kind == "unroom":
            if self.room_homes.get(jid) == node:
                del self.room_homes[jid]
        else:
            return False
        return True

    def forget(self, jid: JID) -> None:
        self.sessions.pop(jid, None)
        self.claims.pop(jid, None)
        peers = self.by_bare.get(jid.bare)
        if peers is not None:
            peers.discard(jid)
            if not peers:
                del self.by_bare[jid.bare]

    def nodes(self) -> set[str]:
        return set(self.sessions.values()) | set(self.room_homes.values())

    def drop_node(self, node: str) -> set[JID]:
        """Forget a dead node's sessions and rooms; returns the sessions that went with it."""
        gone = {jid for jid, n in self.sessions.items() if n == node}
        for jid in gone:
            self.forget(jid)
        for room in [r for r, n in self.room_homes.items() if n == node]:
            del self.room_homes[room]
        return gone


class RedisCluster:
    def __init__(
        self,
        broker: Broker,
        mucs: Sequence[MucService],
        cfg: ClusterConfig,
        satellites: dict[str, str] | None = None,
    ) -> None:
        """``satellites``: a domain whose ``node@domain`` lives with ``node@<muc domain>`` (the
        lobby: ``{lobby domain: conference domain}``)."""
        self.mucs = mucs
        self.satellites = dict(satellites or {})
        self.broker = broker
        self.cfg = cfg
        self.node = cfg.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.redis = aioredis.from_url(cfg.redis_url)
        self.directory = ClusterDirectory(self.node)
        self.outbox: list[tuple[str, bytes]] = []
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.muc_domains = {m.domain for m in mucs}

    # -- the broker's view -------------------------------------------------------------------
    def locate(self, jid: JID) -> str | None:
        return self.directory.sessions.get(jid)

    def resources_of(self, bare: JID) -> list[JID]:
        return list(self.directory.by_bare.get(bare, ()))

    def known(self, jid: JID) -> bool:
        return jid in self.directory.sessions

    def claims_of(self, jid: JID) -> TokenClaims | None:
        """The token claims of another node's session (None: it logged in without a token)."""
        return self.directory.claims.get(jid)

    def component_node(self, stanza: Element, to: JID) -> str | None:
        if not to.node:
            return None
        bare = to.bare
        if to.domain in self.satellites:
            bare = JID(to.node, self.satellites[to.domain], "")
        elif to.domain not in self.muc_domains:
            return None
        home = self.directory.room_homes.get(bare)
        return home if home is not None and home != self.node else None

    def forward(self, node: str, jid: JID, data: bytes) -> None:
        self._queue(PREFIX + "node:" + node, b"D" + str(jid).encode() + b"\n" + data)

    def forward_stanza(self, node: str, stanza: Element) -> None:
        self._queue(PREFIX + "node:" + node, b"S" + stanza.to_bytes())

    def _queue(self, channel: str, payload: bytes) -> None:
        self.outbox.append((channel, payload))
        self.wake.set()

    # -- local changes -----------------------------------------------------------------------
    def session_changed(self, session: Deliverable, bound: bool) -> None:
        jid = str(session.jid)
        if bound:
            claims: TokenClaims | None = getattr(session, "claims", None)
            extra = f" {claims.to_json()}" if claims is not None else ""
            self._queue("hset", f"{PREFIX}sessions {jid} {self.node}".encode())
            if claims is not None:
                self._queue("hset", f"{PREFIX}claims {jid} {self.node}{extra}".encode())
            self._queue(PREFIX + "events", f"bind {jid} {self.node}{extra}".encode())
        else:
            self._queue("hdel", f"{PREFIX}sessions {jid}".encode())
            self._queue("hdel", f"{PREFIX}claims {jid}".encode())
            self._queue(PREFIX + "events", f"unbind {jid} {self.node}".encode())

    def room_changed(self, room: Room, created: bool) -> None:
        jid = room.jid_str
        if created:
            self._queue("hset", f"{PREFIX}rooms {jid} {self.node}".encode())
            self._queue(PREFIX + "events", f"room {jid} {self.node}".encode())
        else:
            self._queue("hdel", f"{PREFIX}rooms {jid}".encode())
            self._queue(PREFIX + "events", f"unroom {jid} {self.node}".encode())

    # -- remote changes ----------------------------------------------------------------------
    def _apply_event(self, text: str) -> None:
        if not self.directory.apply(text):
            log.warning("bad cluster event %r", text[:200])

    def _node_dead(self, node: str) -> None:
        gone = self.directory.drop_node(node)
        log.warning("node %s is gone: dropping %d sessions and its rooms", node, len(gone))
        for muc in self.mucs:
            for room in list(muc.rooms.values()):
                for occ in [o for o in room.occupants.values() if o.real_jid in gone]:
                    muc.handle(
                        Element(
                            "presence",
                            attrs={
                                "from": str(occ.real_jid),
                                "type": "unavailable",
                                "to": room.occupant_jid(occ.nick),
                            },
                        ),
                        parse_jid(room.occupant_jid(occ.nick)),
                        occ.real_jid,
                    )
        self._queue("purge", node.encode())

    # -- I/O tasks ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.redis.ping()
        await self.redis.set(PREFIX + "alive:" + self.node, b"1", px=int(self.cfg.dead_after * 1000))
        claims = await self.redis.hgetall(PREFIX + "claims")
        for jid_b, node_b in (await self.redis.hgetall(PREFIX + "sessions")).items():
            held = _text(claims.get(jid_b, b""))
            node = _text(node_b)
            extra = held[len(node) :] if held.startswith(node + " ") else ""
            self._apply_event(f"bind {_text(jid_b)} {node}{extra}")
        for jid_b, node_b in (await self.redis.hgetall(PREFIX + "rooms")).items():
            self._apply_event(f"room {_text(jid_b)} {_text(node_b)}")
        self.pubsub = self.redis.pubsub()
        await self.pubsub.subscribe(PREFIX + "events", PREFIX + "node:" + self.node)
        self.broker.cluster = self
        self.broker.session_listeners.append(self.session_changed)
        for muc in self.mucs:
            muc.room_listeners.append(self.room_changed)
        self.tasks = [
            asyncio.ensure_future(self._reader()),
            asyncio.ensure_future(self._writer()),
            asyncio.ensure_future(self._heartbeat()),
        ]
        log.info(
            "cluster node %s joined via %s (%d remote sessions, %d remote rooms)",
            self.node,
            self.cfg.redis_url,
            len(self.directory.sessions),
            len(self.directory.room_homes),
        )

    async def stop(self) -> None:
        await self._flush()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await self.redis.delete(PREFIX + "alive:" + self.node)
            await self.pubsub.aclose()
            await self.redis.aclose()

    async def _reader(self) -> None:
        own = (PREFIX + "node:" + self.node).encode()
        while True:
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None:
                continue
            data: bytes = msg["data"]
            if msg["channel"] == own:
                self._incoming(data)
            else:
                self._apply_event(data.decode(errors="replace"))

    def _incoming(self, data: bytes) -> None:
        kind = data[:1]
        if kind == b"D":
            nl = data.index(b"\n")
            try:
                jid = parse_jid(data[1:nl].decode())
            except InvalidJid:
                return
            session = self.broker.session_for(jid)
            if session is not None:
                self.broker.deliveries += 1
                session.deliver(data[nl + 1 :])
        elif kind == b"S":
            try:
                stanza = parse_document(data[1:])
            except XmlStreamError:
                return
            to = stanza.get("to")
            frm = stanza.get("from")
            if to is None or frm is None:
                return
            try:
                to_jid, frm_jid = parse_jid(to), parse_jid(frm)
            except InvalidJid:
                return
            component = self.broker.components.get(to_jid.domain)
            if component is not None:
                component.handle(stanza, to_jid, frm_jid)

    async def _writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self.outbox:
            return
        batch, self.outbox = self.outbox, []
        pipe = self.redis.pipeline(transaction=False)
        for channel, payload in batch:
            if channel == "hset":
                key, field, value = payload.decode().split(" ", 2)
                pipe.hset(key, field, value)
            elif channel == "hdel":
                key, field = payload.decode().split(" ", 1)
                pipe.hdel(key, field)
            elif channel == "purge":
                continue
            else:
                pipe.publish(channel, payload)
        await pipe.execute()
        for channel, payload in batch:
            if channel == "purge":
                await self._purge(payload.decode())

    async def _purge(self, node: str) -> None:
        """Remove a dead node's entries from the shared hashes (every node may do it; idempotent)."""
        for key in ("sessions", "rooms", "claims"):
            entries = await self.redis.hgetall(PREFIX + key)
            dead = [k for k, v in entries.items() if _text(v).split(" ", 1)[0] == node]
            if dead:
                await self.redis.hdel(PREFIX + key, *dead)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            try:
                await self.redis.set(PREFIX + "alive:" + self.node, b"1", px=int(self.cfg.dead_after * 1000))
                for node in self.directory.nodes():
                    if not await self.redis.exists(PREFIX + "alive:" + node):
                        self._node_dead(node)
            except (OSError, aioredis.RedisError) as exc:
                log.warning("redis heartbeat failed: %s", exc)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
