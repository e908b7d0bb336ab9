"""Recording and streaming through recorders (Jibri's protocol, Jicofo's JibriRecorder role).

Recorders (:mod:`services.recorder`) join the brewery room ``jibribrewery@<internal-muc>`` with
a ``<jibri-status/>`` presence (:mod:`services.common.jibri`). A participant asks the focus to
record by sending ``<jibri action='start' recording_mode='file'|'stream' streamid=.../>`` to the
focus's occupant JID in the conference room (``room@muc/focus``, as lib-jitsi-meet does); the
focus picks the recorder with the most free capacity, sends it the start IQ with a new
``session_id``, answers the requester with ``status='pending'`` and publishes
``<jibri-recording-status/>`` in its own room presence, so every participant and every joiner
knows. The recorder reports ``status='on'`` once media is written and ``off`` when it ends.

Who may ask: a moderator of the room (:mod:`.moderation`; the role the MUC gives the occupant,
as Jicofo's Jibri handling checks before anything else), who is a participant of the conference.
The requester is the MUC occupant JID the broker stamps on the IQ, which the client cannot forge;
anyone else is answered ``forbidden`` and nothing is started or stopped
(docs/security.md, "Recording and streaming").

Media: the recorder is not a room occupant. The focus adds it to the conference as a *hidden*
participant (:attr:`~.conference.Participant.hidden`): a Colibri endpoint with no sources, last-N
unlimited, invited with Jingle sent to the recorder's brewery occupant JID, with the Jingle sid
``<session_id>-<n>`` (:func:`services.common.jibri.media_sid`) so a recorder running several
recordings knows which one a session belongs to. Participants never see it (it sends nothing and
is not in the room), and it does not keep a conference alive: when the last real participant
leaves, recordings are stopped and the conference ends.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from services.common import jibri
from services.common.jibri import Action, JibriIq, RecorderStatus, RecordingMode, RecordingStatus, Status
from services.common.logging import RateLimitedLogger

from . import flows
from .limits import RequestLimiter

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    from .conference import Conference
    from .focus import Focus

log = logging.getLogger("focus.jibri")


class JibriSignaling(Protocol):
    async def send_jibri(self, recorder: str, request: JibriIq) -> JibriIq: ...
    def set_room_extension(self, room: str, tag: str, element: ET.Element | None) -> None: ...


# a recorder's errors that refuse the request itself (its stream target, its values), not that
# recorder: the requester gets them as they are and no other recorder is tried
REQUEST_REFUSED = ("bad-request", "not-acceptable")


class JibriRefused(Exception):
    """A request the focus answers with an XMPP error (``condition``, RFC 6120 section 8.3.3)."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


@dataclass
class Recording:
    session_id: str
    room: str
    recorder: str
    mode: RecordingMode
    initiator: str
    stream_id: str | None = None
    status: Status = Status.PENDING

    @property
    def endpoint_id(self) -> str:
        return f"jibri-{self.session_id}"


@dataclass
class RecordingDecisions:
    """The pure part: known recorders, recordings per room, who may do what."""

    recorders: dict[str, RecorderStatus] = field(default_factory=dict)
    recordings: dict[str, Recording] = field(default_factory=dict)  # session id -> recording

    def recorder_presence(self, nick: str, status: RecorderStatus) -> None:
        self.recorders[nick] = status

    def recorder_left(self, nick: str) -> list[Recording]:
        self.recorders.pop(nick, None)
        return [r for r in self.recordings.values() if r.recorder == nick]

    def pick(self, exclude: set[str]) -> str | None:
        """The recorder with the most free capacity (counting what we started and it has not
        reported yet); ties by name, so the choice is stable."""
        best: tuple[int, str] | None = None
        for nick, status in self.recorders.items():
            if nick in exclude:
                continue
            pending = sum(
                1 for r in self.recordings.values() if r.recorder == nick and r.status is Status.PENDING
            )
            free = status.free - pending
            if free > 0 and (best is None or (-free, nick) < (-best[0], best[1])):
                best = (free, nick)
        return best[1] if best else None

    @staticmethod
    def may_control(conf: Conference | None, requester_nick: str, moderator: bool) -> bool:
        """Only a moderator who is a (visible) participant of the conference."""
        if conf is None or not moderator:
            return False
        participant = conf.participants.get(requester_nick)
        return participant is not None and not participant.hidden

    def in_room(self, room: str, mode: RecordingMode | None = None) -> list[Recording]:
        return [r for r in self.recordings.values() if r.room == room and (mode is None or r.mode is mode)]

    def room_status(self, room: str) -> RecordingStatus | None:
        """What the focus's presence says: the file recording first, else the stream."""
        current = sorted(self.in_room(room), key=lambda r: (r.mode is not RecordingMode.FILE, r.session_id))
        if not current:
            return None
        r = current[0]
        return RecordingStatus(r.status, r.mode, session_id=r.session_id, initiator=r.initiator)


class JibriService:
    """Performs the decisions: IQs to recorders, hidden participants, room presence."""

    def __init__(self, focus: Focus, is_moderator: Callable[[str, str], bool]) -> None:
        """``is_moderator(room, nick)``: whether that occupant is a moderator (the moderation
        core's answer, ``moderation.py``); only moderators may start or stop a recording."""
        self.focus = focus
        self.is_moderator = is_moderator
        self.settings = focus.settings.jibri
        self.state = RecordingDecisions()
        self.signaling: JibriSignaling | None = None
        self._log = RateLimitedLogger(log)
        self.starts = RequestLimiter(self.settings.start_burst, self.settings.starts_per_minute)

    def _brewery_jid(self, nick: str) -> str:
        return f"{self.focus.settings.jibri_brewery_jid}/{nick}"

    def _publish(self, room: str, last: RecordingStatus | None = None) -> None:
        if self.signaling is None:
            return
        status = self.state.room_status(room) or last
        element = status.to_element() if status is not None else None
        self.signaling.set_room_extension(room, jibri.RECORDING_STATUS_TAG, element)

    # ------------------------------------------------------------------ brewery
    def recorder_presence(self, nick: str, status: RecorderStatus) -> None:
        if nick not in self.state.recorders:
            log.info("recorder joined the brewery nick=%s capacity=%d", nick, status.capacity)
        self.state.recorder_presence(nick, status)

    def recorder_left(self, nick: str) -> None:
        for recording in self.state.recorder_left(nick):
            log.warning(
                "recorder %s left during recording session=%s room=%s",
                nick,
                recording.session_id,
                recording.room,
            )
            self.focus._spawn(
                self._ended(recording, "recorder left"), f"end recording {recording.session_id}"
            )

    # ------------------------------------------------------------------ requests
    async def request(self, room: str, requester_nick: str, iq: JibriIq) -> JibriIq:
        """A participant's start/stop; returns the answer or raises :class:`JibriRefused`."""
        conf = self.focus.conferences.get(room)
        if not self.state.may_control(conf, requester_nick, self.is_moderator(room, requester_nick)):
            self._log.info("forbidden", "recording %s by %s/%s refused: not a moderator", iq.action.value, room,
                           requester_nick)  # fmt: skip
            raise JibriRefused("forbidden", "only moderators may start or stop recording and streaming")
        if iq.action is Action.START:
            try:
                start = iq.checked_start()
            except jibri.JibriFormatError as exc:
                raise JibriRefused("bad-request", str(exc)) from None
            wait = self.starts.check(room, time.monotonic())
            if wait is not None:
                self._log.info("starts", "recording start in %s refused: over the room's rate", room)
                raise JibriRefused("resource-constraint", f"too many recording starts; retry in {wait:.0f} s")
            return await self._start(room, f"{room}/{requester_nick}", start)
        if iq.action is Action.STOP:
            return await self._stop_request(room, iq)
        raise JibriRefused("bad-request", "action must be start or stop")

    async def _start(self, room: str, initiator: str, iq: JibriIq) -> JibriIq:
        assert self.signaling is not None and iq.recording_mode is not None
        if self.state.in_room(room, iq.recording_mode):
            raise JibriRefused("conflict", f"a {iq.recording_mode.value} recording is already running")
        tried: set[str] = set()
        for _ in range(self.settings.start_attempts):
            nick = self.state.pick(tried)
            if nick is None:
                break
            tried.add(nick)
            session_id = secrets.token_hex(8)
            recording = Recording(session_id, room, nick, iq.recording_mode, initiator, iq.stream_id)
            self.state.recordings[session_id] = recording  # counts against its capacity meanwhile
            request = JibriIq(
                action=Action.START,
                recording_mode=iq.recording_mode,
                stream_id=iq.stream_id,
                session_id=session_id,
                room=room,
                app_data=iq.app_data,
            )
            try:
                answer = await asyncio.wait_for(
                    self.signaling.send_jibri(self._brewery_jid(nick), request), self.settings.iq_timeout
                )
            except JibriRefused as exc:
                self.state.recordings.pop(session_id, None)
                if exc.condition in REQUEST_REFUSED:  # any recorder would: tell the requester why
                    raise
                log.warning("recorder %s refused to start room=%s: %s", nick, room, exc)
                continue
            except Exception as exc:
                self.state.recordings.pop(session_id, None)
                log.warning("recorder %s refused to start room=%s: %s", nick, room, exc)
                continue
            if answer.status is Status.OFF:
                self.state.recordings.pop(session_id, None)
                log.warning("recorder %s could not start room=%s: %s", nick, room, answer.failure_reason)
                continue
            recording.status = Status.ON if answer.status is Status.ON else Status.PENDING
            log.info(
                "recording started session=%s room=%s mode=%s recorder=%s by=%s",
                session_id,
                room,
                iq.recording_mode.value,
                nick,
                initiator,
            )
            await self._add_media(recording)
            self._publish(room)
            return JibriIq(status=recording.status, session_id=session_id, recording_mode=iq.recording_mode)
        raise JibriRefused("service-unavailable", "no recorder available")

    async def _stop_request(self, room: str, iq: JibriIq) -> JibriIq:
        current = self.state.in_room(room)
        if iq.session_id:
            current = [r for r in current if r.session_id == iq.session_id]
        elif iq.recording_mode is not None:
            current = [r for r in current if r.mode is iq.recording_mode]
        if not current:
            raise JibriRefused("item-not-found", "no such recording")
        for recording in current:
            await self.stop(recording, "stopped")
        return JibriIq(status=Status.OFF, session_id=current[0].session_id)

    async def stop(self, recording: Recording, why: str) -> None:
        """Tell the recorder to stop (it finalises its files), then drop its media session."""
        assert self.signaling is not None
        try:
            await asyncio.wait_for(
                self.signaling.send_jibri(
                    self._brewery_jid(recording.recorder),
                    JibriIq(action=Action.STOP, session_id=recording.session_id),
                ),
                self.settings.iq_timeout,
            )
        except Exception as exc:
            log.warning(
                "recorder %s did not confirm stop of %s: %s", recording.recorder, recording.session_id, exc
            )
        await self._ended(recording, None if why == "stopped" else why)

    async def _ended(self, recording: Recording, failure: str | None) -> None:
        if self.state.recordings.pop(recording.session_id, None) is None:
            return
        log.info(
            "recording ended session=%s room=%s%s",
            recording.session_id,
            recording.room,
            f" ({failure})" if failure else "",
        )
        await self._remove_media(recording)
        self._publish(
            recording.room,
            RecordingStatus(
                Status.OFF, recording.mode, session_id=recording.session_id, failure_reason=failure
            ),
        )

    def recorder_update(self, nick: str, iq: JibriIq) -> None:
        """A recorder's own ``<jibri status=.../>`` (on: media is written; off: it ended)."""
        recording = self.state.recordings.get(iq.session_id or "")
        if recording is None or recording.recorder != nick:
            log.warning("status %s from recorder %s for unknown session %s", iq.status, nick, iq.session_id)
            return
        if iq.status is Status.ON and recording.status is not Status.ON:
            recording.status = Status.ON
            log.info("recording on session=%s room=%s", recording.session_id, recording.room)
            self._publish(recording.room)
        elif iq.status is Status.OFF:
            self.focus._spawn(
                self._ended(recording, iq.failure_reason), f"end recording {recording.session_id}"
            )

    async def conference_ended(self, conf: Conference) -> None:
        """The last participant left: stop the room's recordings (called under the room's lock,
        so the media sessions are expired here, not through :meth:`_remove_media`)."""
        out = flows.Outbox()
        for participant in [p for p in conf.participants.values() if p.hidden]:
            left = flows.left(conf, participant.endpoint_id)
            if left is not None:
                out.extend(left)
        await self.focus._perform(conf, out)
        for recording in self.state.in_room(conf.room):
            self.focus._spawn(self.stop(recording, "meeting ended"), f"stop recording {recording.session_id}")

    # ------------------------------------------------------------------ media session
    async def _add_media(self, recording: Recording) -> None:
        focus = self.focus
        async with focus._lock(recording.room):
            conf = focus.conferences.get(recording.room)
            if conf is None:
                return
            jid = self._brewery_jid(recording.recorder)
            participant = conf.occupant_joined(recording.endpoint_id, jid, jid)
            if participant is None:
                return
            participant.hidden = True
            participant.recording = recording.session_id
            await focus._invite_locked(conf, participant)
            await focus._save(conf)

    async def _remove_media(self, recording: Recording) -> None:
        focus = self.focus
        async with focus._lock(recording.room):
            conf = focus.conferences.get(recording.room)
            if conf is None:
                return
            out = flows.left(conf, recording.endpoint_id)
            if out is not None:
                await focus._perform(conf, out)
                await focus._save(conf)

    def view(self) -> dict[str, object]:
        return {
            "recorders": {
                nick: {
                    "busy": s.busy,
                    "healthy": s.healthy,
                    "capacity": s.capacity,
                    "active": s.active,
                    "http_url": s.http_url,
                }
                for nick, s in self.state.recorders.items()
            },
            "recordings": [
                {
                    "session_id": r.session_id,
                    "room": r.room,
                    "recorder": r.recorder,
                    "mode": r.mode.value,
                    "status": r.status.value,
                    "initiator": r.initiator,
                }
                for r in self.state.recordings.values()
            ],
        }
