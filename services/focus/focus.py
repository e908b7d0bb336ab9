"""The orchestrator: rooms become conferences on bridges; participants get Jingle; failures move them.

It owns the conferences (:class:`~.conference.Conference`), the bridge registry and the state
store, and drives two I/O adapters: the XMPP session (:class:`Signaling`, implemented by
:class:`~.xmpp.FocusXmpp`) and the Colibri client. Every operation on one conference runs under
that conference's lock, so allocations, answers, departures and moves never interleave; Jingle
IQ answers are awaited outside the lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from services.common import colibri, jibri, jingle
from services.common.brewery import BridgeStats
from services.common.logging import RateLimitedLogger
from services.common.tasks import Background

from . import failover, flows, metrics, offer
from .bridges import BridgeRegistry, HealthOutcome
from .colibri_client import ColibriError
from .conference import Conference, Participant, ParticipantState
from .config import FocusSettings
from .jibri import JibriService
from .limits import EmptyConferences, RequestLimiter, RequestRefused
from .store import ConferenceStore

log = logging.getLogger("focus")


def is_gateway(real_jid: str | None, gateway_jid: str) -> bool:
    """Whether an occupant is the SIP gateway: its real JID, as the broker stamps it in the
    room's ``muc#user`` item (a client's own is stripped), has the gateway account's bare JID.
    Never the nick or anything else the occupant says about itself."""
    if not real_jid:
        return False
    bare = real_jid.partition("/")[0].lower()
    return bare == gateway_jid.lower()


class Signaling(Protocol):
    async def ensure_room(self, room: str) -> set[str]: ...
    def leave_room(self, room: str) -> None: ...
    async def destroy_room(self, room: str, reason: str) -> None: ...
    async def send_jingle(self, to: str, message: jingle.Jingle) -> bool: ...


class Colibri(Protocol):
    """The Colibri REST calls the focus makes (implemented by :class:`~.colibri_client.ColibriClient`)."""

    async def create(self, base: str, body: colibri.Conference) -> colibri.Conference: ...
    async def patch(self, base: str, body: colibri.Conference) -> colibri.Conference: ...
    async def expire(self, base: str, conference_id: str) -> None: ...
    async def health(self, base: str, within: float) -> tuple[bool, bool, str]: ...


class Focus:
    def __init__(
        self,
        settings: FocusSettings,
        colibri: Colibri,
        store: ConferenceStore,
        clock: Callable[[], float] = time.monotonic,
        *,
        is_moderator: Callable[[str, str], bool] = lambda _room, _nick: False,
    ) -> None:
        """``is_moderator(room, nick)``: who may start and stop recordings (the moderation
        core's answer, ``moderation.py``); by default nobody, and every request is refused."""
        self.settings = settings
        b = settings.bridge
        self.registry = BridgeRegistry(
            b.colibri_urls,
            ramp_up_window=b.ramp_up_window,
            health_failures=b.health_failures,
            overloaded_stress=b.overloaded_stress,
            min_participant_stress=b.min_participant_stress,
        )
        self.colibri = colibri
        self.store = store
        self.clock = clock
        self.signaling: Signaling | None = None
        self.conferences: dict[str, Conference] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.background = Background(log)
        self._session_rooms: dict[str, str] = {}  # Jingle sid -> room (stale entries are harmless)
        c = settings.conference
        self.offer_settings = flows.OfferSettings(
            initiator=settings.xmpp.jid,
            ice_lite=settings.bridge.ice_lite,
            channel_expire=c.channel_expire,
            enable_sctp=c.enable_sctp,
            last_n=c.last_n,
        )
        self.limiter = RequestLimiter(c.request_burst, c.requests_per_minute)
        self.empty = EmptyConferences(c.empty_timeout)
        self.requests_refused = 0
        self._guest_log = RateLimitedLogger(log)  # what guests send: a line now and then
        self.conferences_expired = 0
        self.jibri = JibriService(self, is_moderator)

    # ------------------------------------------------------------------ plumbing
    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        self.background.spawn(coro, what)

    def _lock(self, room: str) -> asyncio.Lock:
        lock = self._locks.get(room)
        if lock is None:
            lock = self._locks[room] = asyncio.Lock()
        return lock

    def _drop_lock(self, room: str) -> None:
        """Forget an ended conference's lock (when nobody holds it)."""
        lock = self._locks.get(room)
        if room not in self.conferences and lock is not None and not lock.locked():
            del self._locks[room]

    def _send(self, to: str, message: jingle.Jingle) -> None:
        assert self.signaling is not None
        metrics.JINGLE_SENT.labels(message.action).inc()
        self._spawn(self.signaling.send_jingle(to, message), f"jingle {message.action} to {to}")

    async def _save(self, conf: Conference) -> None:
        await self.store.save(conf)
        self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.CONFERENCES.set(len(self.conferences))
        metrics.PARTICIPANTS.set(sum(len(c.participants) for c in self.conferences.values()))

    async def close(self) -> None:
        await self.background.close()

    # ------------------------------------------------------------------ restore (Redis)
    async def restore(self) -> None:
        """Load conferences a previous focus process left in the store (before XMPP is up)."""
        for conf in await self.store.load_all():
            self.conferences[conf.room] = conf
            self._observe(conf)
            for participant in conf.participants.values():
                if participant.sid:
                    self._session_rooms[participant.sid] = conf.room
            log.info(
                "restored conference room=%s bridge=%s participants=%d",
                conf.room,
                conf.bridge_id,
                len(conf.participants),
            )
        self._update_gauges()

    def xmpp_ready(self) -> None:
        """The XMPP session (re)started: be in every conference's room again and forget the
        participants who are no longer there (conferences restored from the store, or a broker
        restart that emptied the rooms; their pages rejoin as new occupants)."""
        for room in list(self.conferences):
            self._spawn(self._rejoin(room), f"rejoin {room}")

    async def _rejoin(self, room: str) -> None:
        assert self.signaling is not None
        present = await self.signaling.ensure_room(room)
        async with self._lock(room):
            conf = self.conferences.get(room)
            if conf is None:
                return
            gone = [ep for ep, p in conf.participants.items() if ep not in present and not p.hidden]
        for ep in gone:
            await self._leave(room, ep)
        async with self._lock(room):
            conf = self.conferences.get(room)
            if conf is None:
                return
            if failover.bridge_gone(conf.bridge_id, self.registry.__contains__):
                log.warning("restored conference room=%s: bridge %s is gone", room, conf.bridge_id)
                await self._move_locked(conf, started=self.clock())
            for participant in list(conf.participants.values()):
                if participant.state is ParticipantState.JOINED:
                    await self._invite_locked(conf, participant)

    async def set_muted(self, room: str, nick: str, kinds: list[str]) -> bool:
        """Force-mute ``kinds`` of a participant at the bridge (and only those): its channels
        become receive-only (services/focus/moderation.py). False if it has no participant."""
        async with self._lock(room):
            conf = self.conferences.get(room)
            participant = conf.participants.get(nick) if conf is not None else None
            if conf is None or participant is None:
                return False
            participant.muted = sorted(kinds)
            if conf.colibri_id is not None and participant.channels:
                await self._perform(
                    conf, flows.Outbox(patches=[offer.mute_patch(conf.colibri_id, participant)])
                )
            await self._save(conf)
            return True

    # ------------------------------------------------------------------ XMPP events
    async def conference_request(self, room: str, requester: str) -> None:
        """Raises :class:`RequestRefused` when ``requester`` asks too often."""
        assert self.signaling is not None
        wait = self.limiter.check(requester, self.clock())
        if wait is not None:
            self.requests_refused += 1
            raise RequestRefused(
                "resource-constraint", f"too many conference requests; retry in {wait:.0f} s", wait
            )
        await self.signaling.ensure_room(room)
        if room not in self.conferences:
            conf = self.conferences[room] = Conference(room=room)
            log.info("conference room=%s requested by %s", room, requester)
            self._observe(conf)
            await self._save(conf)

    def _observe(self, conf: Conference) -> None:
        self.empty.observe(conf.room, len(conf.participants), self.clock())

    def occupant_joined(self, room: str, nick: str, occupant_jid: str, real_jid: str | None) -> None:
        conf = self.conferences.get(room)
        if conf is None:
            conf = self.conferences[room] = Conference(room=room)
        participant = conf.occupant_joined(nick, occupant_jid, real_jid)
        self._observe(conf)
        if participant is None:
            return
        participant.mixed_audio = is_gateway(real_jid, self.settings.xmpp.gateway_jid)
        log.info("participant joined room=%s endpoint=%s jid=%s%s", room, nick, real_jid or "?",
                 " (SIP gateway: mix-minus audio)" if participant.mixed_audio else "")  # fmt: skip
        self._spawn(self._invite(room, nick), f"invite {occupant_jid}")

    def occupant_left(self, room: str, nick: str) -> None:
        self._spawn(self._leave(room, nick), f"leave {room}/{nick}")

    def bridge_presence(self, bridge_id: str, stats: BridgeStats) -> None:
        new = self.registry.presence(bridge_id, stats, self.clock())
        if new:
            log.info(
                "bridge joined the brewery id=%s url=%s", bridge_id, self.registry.colibri_url(bridge_id)
            )
            self._spawn(self._invite_waiting(), "invite waiting participants")
        metrics.BRIDGES.set(len(self.registry.ids()))

    def bridge_left(self, bridge_id: str) -> None:
        if self.registry.departed(bridge_id):
            log.warning("bridge left the brewery id=%s", bridge_id)
            metrics.BRIDGES.set(len(self.registry.ids()))
            self.bridge_failed(bridge_id, "left the brewery")

    def bridge_failed(self, bridge_id: str, reason: str) -> None:
        started = self.clock()
        rooms = [c.room for c in self.conferences.values() if c.bridge_id == bridge_id]
        log.warning("bridge failed id=%s reason=%s conferences=%d", bridge_id, reason, len(rooms))
        for room in rooms:
            self._spawn(self._move(room, bridge_id, started), f"move {room}")

    def jingle_received(self, sender: str, message: jingle.Jingle) -> bool:
        """Jingle from a participant: its session is found by sid (participants send from their
        real JID, or through the room from their occupant JID). False for an unknown session
        (the adapter answers ``unknown-session``)."""
        room = self._session_rooms.get(message.sid)
        if room is None:
            self._guest_log.warning(
                "unknown-session", "jingle %s from %s for unknown session sid=%s", message.action, sender,
                message.sid[:64],
            )  # fmt: skip
            return False
        self._spawn(self._jingle(room, sender, message), f"jingle {message.action} from {sender}")
        return True

    # ------------------------------------------------------------------ health
    async def check_health(self) -> None:
        """One round of health checks of every known bridge (in parallel)."""
        timeout = self.settings.bridge.health_timeout

        async def one(bridge_id: str) -> None:
            url = self.registry.colibri_url(bridge_id)
            if url is None:
                return
            ok, refused, reason = await self.colibri.health(url, timeout)
            outcome = HealthOutcome.OK if ok else HealthOutcome.REFUSED if refused else HealthOutcome.BAD
            was_usable = self.registry.is_usable(bridge_id)
            if self.registry.health_result(bridge_id, outcome, reason):
                self.bridge_failed(bridge_id, f"health check: {reason}")
            elif not was_usable and self.registry.is_usable(bridge_id):
                log.info("bridge %s is healthy again", bridge_id)
                self._spawn(self._invite_waiting(), "invite waiting participants")

        await asyncio.gather(*(one(b) for b in self.registry.ids()))

    async def health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.bridge.health_interval)
            try:
                await self.check_health()
            except Exception:
                log.exception("health check round failed")

    # ------------------------------------------------------------------ flows
    async def _perform(self, conf: Conference, out: flows.Outbox) -> None:
        """Send an outbox: PATCHes to the conference's bridge (in order), then the Jingle."""
        if out.patches and conf.bridge_id is not None:
            url = self.registry.colibri_url(conf.bridge_id)
            if url is not None and self.registry.is_usable(conf.bridge_id):
                for body in out.patches:
                    try:
                        await self.colibri.patch(url, body)
                    except ColibriError as exc:
                        log.warning("PATCH of room=%s on %s failed: %s", conf.room, conf.bridge_id, exc)
                        if exc.unreachable and self.registry.mark_failed(conf.bridge_id, str(exc)):
                            self.bridge_failed(conf.bridge_id, str(exc))
                        break
        for to, message in out.jingle:
            self._send(to, message)

    async def _invite(self, room: str, nick: str) -> None:
        async with self._lock(room):
            conf = self.conferences.get(room)
            participant = conf.participants.get(nick) if conf else None
            if conf is None or participant is None or participant.state is not ParticipantState.JOINED:
                return
            await self._invite_locked(conf, participant)
            if participant.state is ParticipantState.JOINED:  # no bridge yet: remember who waits
                await self._save(conf)

    async def _invite_waiting(self) -> None:
        for room in list(self.conferences):
            async with self._lock(room):
                conf = self.conferences.get(room)
                if conf is None:
                    continue
                for participant in flows.waiting(conf):
                    await self._invite_locked(conf, participant)

    def _place(self, conf: Conference, avoid: set[str]) -> str | None:
        region = self.settings.bridge.region or None
        current_usable = conf.bridge_id is not None and self.registry.is_usable(conf.bridge_id)
        return failover.place(
            conf.bridge_id,
            current_usable,
            lambda exclude: self.registry.select(self.clock(), region=region, exclude=exclude),
            avoid,
        )

    async def _invite_locked(self, conf: Conference, participant: Participant) -> None:
        """Allocate channels for ``participant`` and send it session-initiate (conference lock held).
        What a failure leads to is decided by :mod:`.failover`."""
        invitation = failover.Invitation()
        while invitation.next_attempt():
            bridge_id = self._place(conf, invitation.avoid)
            if bridge_id is None:
                log.error("no bridge available for room=%s; %s waits", conf.room, participant.endpoint_id)
                return
            url = self.registry.colibri_url(bridge_id)
            assert url is not None
            settings = self.offer_settings
            if participant.hidden:  # a recorder receives everyone: no last-N
                settings = dataclasses.replace(settings, last_n=-1)
            request = flows.allocation_request(conf, participant, bridge_id, settings)
            started = time.perf_counter()
            try:
                if request.id is None:
                    response = await self.colibri.create(url, request)
                else:
                    response = await self.colibri.patch(url, request)
                sid = (
                    jibri.media_sid(participant.recording, participant.invites)
                    if participant.recording
                    else secrets.token_hex(8)
                )
                known = self.registry.get(bridge_id)
                out = flows.allocated(
                    conf, participant, bridge_id, request, response, sid, settings,
                    region=known.stats.region if known is not None else None,
                )  # fmt: skip
            except (ColibriError, offer.AllocationError) as exc:
                flows.allocation_failed(participant)
                log.warning("allocation on %s for %s failed: %s", bridge_id, participant.endpoint_id, exc)
                if isinstance(exc, ColibriError):
                    failure = failover.AllocationFailure(
                        creating=request.id is None, status=exc.status, unreachable=exc.unreachable
                    )
                else:
                    failure = failover.AllocationFailure(creating=request.id is None, bad_answer=True)
                decision = invitation.failed(bridge_id, failure, conf.bridge_id)
                if decision.fail_bridge and self.registry.mark_failed(bridge_id, str(exc)):
                    self.bridge_failed(bridge_id, str(exc))
                if decision.move_conference:
                    await self._move_locked(conf, started=self.clock(), except_for=participant)
                if not decision.retry:
                    return
                continue
            metrics.ALLOCATION_SECONDS.observe(time.perf_counter() - started)
            if request.id is None:
                log.info(
                    "conference room=%s placed on bridge=%s colibri_id=%s",
                    conf.room,
                    bridge_id,
                    conf.colibri_id,
                )
            self._session_rooms[sid] = conf.room
            self.registry.endpoint_added(bridge_id, self.clock())
            await self._perform(conf, out)
            await self._save(conf)
            return

    async def _leave(self, room: str, nick: str) -> None:
        async with self._lock(room):
            conf = self.conferences.get(room)
            if conf is None:
                return
            out = flows.left(conf, nick)
            self._observe(conf)
            if out is None:
                return
            log.info("participant left room=%s endpoint=%s", room, nick)
            await self._perform(conf, out)
            if conf.empty:
                await self._end(conf)
            else:
                await self._save(conf)
        self._drop_lock(room)

    async def _end(self, conf: Conference, why: str = "the last participant left") -> None:
        """Forget the conference, stop its recordings, expire it on its bridge and destroy its room
        (conference lock held)."""
        log.info("conference ended room=%s bridge=%s (%s)", conf.room, conf.bridge_id, why)
        await self.jibri.conference_ended(conf)
        self.conferences.pop(conf.room, None)
        self.empty.forget(conf.room)
        for sid in [sid for sid, room in self._session_rooms.items() if room == conf.room]:
            del self._session_rooms[sid]

        await self.store.delete(conf.room)
        self._update_gauges()
        url = self.registry.colibri_url(conf.bridge_id) if conf.bridge_id else None
        if url is not None and conf.colibri_id is not None:
            try:
                await self.colibri.expire(url, conf.colibri_id)
            except ColibriError as exc:  # the bridge's own idle expiry frees it later
                log.info("expiring room=%s on %s: %s", conf.room, conf.bridge_id, exc)
        if self.signaling is not None:
            await self.signaling.destroy_room(conf.room, why)

    async def expire_empty(self) -> None:
        """End every conference that has had no participant for ``conference.empty-timeout``."""
        now = self.clock()
        for known in list(self.conferences.values()):
            self._observe(known)
        for room in self.empty.due(now):
            async with self._lock(room):
                conf = self.conferences.get(room)
                if conf is None:
                    self.empty.forget(room)
                    continue
                if not conf.empty:
                    self._observe(conf)
                    continue
                self.conferences_expired += 1
                await self._end(conf, f"no participant for {self.empty.timeout:.0f} s")
            self._drop_lock(room)

    async def expiry_loop(self) -> None:
        interval = min(5.0, max(0.5, self.empty.timeout / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_empty()
            except Exception:
                log.exception("conference expiry round failed")

    async def _move(self, room: str, from_bridge: str, started: float) -> None:
        async with self._lock(room):
            conf = self.conferences.get(room)
            if conf is None or conf.bridge_id != from_bridge:
                return
            await self._move_locked(conf, started)

    async def _move_locked(
        self, conf: Conference, started: float, except_for: Participant | None = None
    ) -> None:
        """Re-create the conference on another bridge: terminate every session ("moving") and
        invite everyone again."""
        old_bridge = conf.bridge_id
        out = flows.bridge_lost(conf)
        await self._perform(conf, out)
        metrics.FAILOVERS.inc()
        log.warning("moving conference room=%s from bridge=%s participants=%d", conf.room, old_bridge,
                    len(conf.participants))  # fmt: skip
        for participant in flows.waiting(conf):
            if participant is not except_for:
                await self._invite_locked(conf, participant)
        metrics.FAILOVER_SECONDS.observe(self.clock() - started)
        await self._save(conf)

    async def _jingle(self, room: str, sender: str, message: jingle.Jingle) -> None:
        async with self._lock(room):
            conf = self.conferences.get(room)
            participant = conf.by_sid(message.sid) if conf else None
            if conf is None or participant is None:
                log.warning(
                    "jingle %s from %s for an ended session sid=%s", message.action, sender, message.sid
                )
                return
            if participant.real_jid and sender not in (participant.real_jid, participant.occupant_jid):
                self._guest_log.warning("foreign-session", "jingle %s for %s's session from %s: refused",
                                        message.action, participant.endpoint_id, sender)  # fmt: skip
                return
            nick, action = participant.endpoint_id, message.action
            if action == "session-accept":
                await self._perform(conf, flows.accepted(conf, participant, message, self.offer_settings))
            elif action in ("source-add", "source-remove"):
                await self._perform(
                    conf, flows.sources_changed(conf, participant, message, self.offer_settings)
                )
            elif action == "session-info" and message.ice_state == "failed":
                log.warning("ICE failed for %s in room=%s: re-inviting", nick, room)
                await self._perform(conf, flows.ice_failed(conf, participant))
                await self._invite_locked(conf, participant)
            elif action == "session-terminate" and message.bridge_session_restart:
                restart = flows.restart_requested(conf, participant, message)
                if restart is None:
                    log.info("stale restart request from %s in room=%s: ignored", nick, room)
                    return
                log.warning("%s asked for a new session in room=%s: re-inviting", nick, room)
                await self._perform(conf, restart)
                await self._invite_locked(conf, participant)
            elif action == "session-terminate":
                log.info("%s ended its session in room=%s", nick, room)
                await self._perform(conf, flows.drop_session(conf, participant))
            elif action == "transport-info":
                await self._perform(conf, flows.transport_info(conf, participant, message))
                return
            else:
                log.info("ignoring jingle %s from %s/%s", action, room, nick)
                return
            await self._save(conf)

    # ------------------------------------------------------------------ views (HTTP API)
    def conferences_view(self) -> list[dict[str, object]]:
        return [
            {
                "room": c.room,
                "bridge": c.bridge_id,
                "colibri_id": c.colibri_id,
                "moves": c.moves,
                "participants": [
                    {
                        "endpoint": p.endpoint_id,
                        "state": p.state.value,
                        "sources": sum(len(m.sources) for m in p.sources.values()),
                        "mixed_audio": p.mixed_audio,
                    }
                    for p in c.participants.values()
                ],
            }
            for c in self.conferences.values()
        ]

    def bridges_view(self) -> list[dict[str, object]]:
        from .selector import order_bridges

        in_use: dict[str, int] = {}
        for c in self.conferences.values():
            if c.bridge_id:
                in_use[c.bridge_id] = in_use.get(c.bridge_id, 0) + 1
        out = []
        for view in order_bridges(self.registry.views(self.clock()), self.settings.bridge.overloaded_stress):
            known = self.registry.get(view.id)
            out.append(
                {
                    "id": view.id,
                    "state": view.state.name.lower(),
                    "stress": view.stats.stress_level,
                    "load": round(view.load, 4),
                    "drain": view.stats.drain,
                    "graceful_shutdown": view.stats.graceful_shutdown,
                    "region": view.stats.region,
                    "version": view.stats.version,
                    "colibri_url": self.registry.colibri_url(view.id),
                    "conferences": in_use.get(view.id, 0),
                    "failure_reason": known.failure_reason if known else None,
                }
            )
        return out
