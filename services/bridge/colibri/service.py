"""Carries Colibri plans out on the media engine; runs expiry; follows engine endpoint states.

The thin I/O layer around :class:`~services.bridge.colibri.conferences.ConferenceBook`: a request
is planned (validated, nothing changed), its effects are applied to the engine (created endpoints
are freed again if a later effect fails), then the plan is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from services.bridge.media.engine import MediaEngine, UnknownEndpoint
from services.common import colibri

from .conferences import (
    ColibriRequestError,
    ConferenceBook,
    CreateEndpoint,
    ExpireEndpoint,
    Plan,
    SetAudioMixing,
    SetColibriLastN,
    SetRemoteTransport,
    SetSctp,
    SetSources,
    UnknownConference,
    WebSocketUrlFn,
    render,
)

log = logging.getLogger("bridge.colibri")



class ColibriEvents(Protocol):
    """What the Colibri service tells the rest of the bridge (the bridge channel's transports)."""

    def endpoint_connected(self, conference_id: str, endpoint_id: str) -> None: ...
    def endpoint_expired(self, conference_id: str, endpoint_id: str) -> None: ...
    def sctp_changed(self, conference_id: str, endpoint_id: str, port: int | None) -> None:
        """An endpoint's ``sctpconnection`` appeared (its port) or went (None)."""

    def conference_expired(self, conference_id: str) -> None: ...


class NoEvents:
    def endpoint_connected(self, conference_id: str, endpoint_id: str) -> None:
        pass

    def endpoint_expired(self, conference_id: str, endpoint_id: str) -> None:
        pass

    def sctp_changed(self, conference_id: str, endpoint_id: str, port: int | None) -> None:
        pass

    def conference_expired(self, conference_id: str) -> None:
        pass


class ConferencePolicy(Protocol):
    """What Colibri channel settings steer in a conference's forwarding policy (media/allocation/lastn.py)."""

    def set_colibri_last_n(self, endpoint_id: str, last_n: int) -> None: ...

    def set_audio_mixing(self, endpoint_id: str, mixed: bool) -> int | None: ...


class ColibriService:
    def __init__(
        self,
        book: ConferenceBook,
        engine: MediaEngine,
        ws_url: WebSocketUrlFn | None,
        clock: Callable[[], float] = time.monotonic,
        policy_of: Callable[[str], ConferencePolicy | None] = lambda conference_id: None,
        events: ColibriEvents | None = None,
    ) -> None:
        """The engine's endpoint states reach :meth:`engine_state` (the bridge routes them)."""
        self.book = book
        self.engine = engine
        self.ws_url = ws_url
        self.clock = clock
        self.policy_of = policy_of
        self.events: ColibriEvents = events if events is not None else NoEvents()

    # --- REST operations -------------------------------------------------------------------------

    def list_conferences(self) -> list[dict[str, Any]]:
        return [colibri.ConferenceRef(id=cid).to_json() for cid in self.book.conferences]

    def get_conference(self, conference_id: str) -> dict[str, Any]:
        return render(self.book.get(conference_id), self.ws_url).to_json()

    def create_conference(self, request: colibri.Conference) -> dict[str, Any]:
        plan = self.book.prepare(None, request, self.clock())
        self._execute(plan)
        log.info("conference created id=%s endpoints=%d", plan.conference.id, len(plan.conference.endpoints))
        return render(plan.conference, self.ws_url, plan).to_json()

    def patch_conference(self, conference_id: str, request: colibri.Conference) -> dict[str, Any]:
        plan = self.book.prepare(conference_id, request, self.clock())
        self._execute(plan)
        return render(plan.conference, self.ws_url, plan).to_json()

    def _execute(self, plan: Plan) -> None:
        cid = plan.conference.id
        created: list[str] = []
        try:
            for effect in plan.effects:
                if isinstance(effect, CreateEndpoint):
                    local = self.engine.create_endpoint(cid, effect.endpoint_id)
                    created.append(effect.endpoint_id)
                    plan.set_local_transport(effect.endpoint_id, local)
                elif isinstance(effect, SetRemoteTransport):
                    try:
                        self.engine.set_remote_transport(cid, effect.endpoint_id, effect.remote)
                    except ValueError as exc:
                        bundle = plan.conference.endpoints[effect.endpoint_id].bundle_id
                        raise ColibriRequestError(f"channel-bundles[{bundle}].transport", str(exc)) from exc
                elif isinstance(effect, SetSources):
                    self.engine.set_sources(cid, effect.endpoint_id, effect.sources)
                elif isinstance(effect, SetColibriLastN | SetAudioMixing):
                    policy = self.policy_of(cid)
                    if policy is None:
                        continue
                    if isinstance(effect, SetColibriLastN):
                        policy.set_colibri_last_n(effect.endpoint_id, effect.last_n)
                    else:
                        ssrc = policy.set_audio_mixing(effect.endpoint_id, effect.mixed)
                        plan.set_mixed_ssrc(effect.endpoint_id, ssrc)
        except BaseException:
            for eid in created:
                self.engine.expire_endpoint(cid, eid)
            raise
        self.book.commit(plan)
        for effect in plan.effects:
            if isinstance(effect, ExpireEndpoint):
                self._expire_endpoint(cid, effect.endpoint_id)
            elif isinstance(effect, SetSctp):
                self._tell(self.events.sctp_changed, cid, effect.endpoint_id, effect.port)

    # --- expiry --------------------------------------------------------------------------------------

    def _expire_endpoint(self, conference_id: str, endpoint_id: str) -> None:
        self.engine.expire_endpoint(conference_id, endpoint_id)
        log.info("endpoint expired conference=%s endpoint=%s", conference_id, endpoint_id)
        self._tell(self.events.endpoint_expired, conference_id, endpoint_id)

    def sweep(self) -> None:
        with_sctp = [
            (conf.id, ep)
            for conf in self.book.conferences.values()
            for ep in conf.endpoints.values()
            if ep.sctp_port is not None
        ]
        result = self.book.sweep(self.clock(), self.engine.endpoint_last_activity)
        for cid, ep in with_sctp:
            if ep.sctp_port is None and self.book.endpoint(cid, ep.id) is ep:
                self._tell(self.events.sctp_changed, cid, ep.id, None)  # its sctpconnection expired alone
        for cid, eid in result.expired_endpoints:
            self._expire_endpoint(cid, eid)
        for cid in result.expired_conferences:
            self.engine.expire_conference(cid)
            log.info("conference expired id=%s", cid)
            self._tell(self.events.conference_expired, cid)

    def expire_conference(self, conference_id: str) -> None:
        """Free a conference now, with all its endpoints (the focus ended it). Raises
        :class:`UnknownConference` when there is no such conference."""
        conf = self.book.remove_conference(conference_id)
        if conf is None:
            raise UnknownConference(conference_id)
        for eid in list(conf.endpoints):
            self._expire_endpoint(conference_id, eid)
        self.engine.expire_conference(conference_id)
        log.info("conference expired id=%s (ended by the focus)", conference_id)
        self._tell(self.events.conference_expired, conference_id)

    def expire_all(self) -> None:
        for cid in list(self.book.conferences):
            conf = self.book.remove_conference(cid)
            for eid in list(conf.endpoints if conf else ()):
                self._expire_endpoint(cid, eid)
            self.engine.expire_conference(cid)
            self._tell(self.events.conference_expired, cid)

    async def run_expiry(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:
                log.exception("expiry sweep failed")

    @staticmethod
    def _tell(event: Callable[..., None], *args: Any) -> None:
        try:
            event(*args)
        except Exception:
            log.exception("Colibri event %s failed", getattr(event, "__name__", event))

    def engine_state(self, conference_id: str, endpoint_id: str, state: str) -> None:
        """The media engine's endpoint state changed (``connected``, ``failed``, ``expired``)."""
        if state == "connected":
            self.book.set_endpoint_state(conference_id, endpoint_id, "connected")
            log.info("endpoint connected conference=%s endpoint=%s", conference_id, endpoint_id)
            self._tell(self.events.endpoint_connected, conference_id, endpoint_id)
        elif state in ("failed", "expired"):
            self.book.set_endpoint_state(conference_id, endpoint_id, state)
            if self.book.remove_endpoint(conference_id, endpoint_id):
                log.info("endpoint %s conference=%s endpoint=%s", state, conference_id, endpoint_id)
                if state == "failed":
                    with contextlib.suppress(UnknownEndpoint):
                        self.engine.expire_endpoint(conference_id, endpoint_id)
                self._tell(self.events.endpoint_expired, conference_id, endpoint_id)
