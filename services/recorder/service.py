"""The recorder's core: recordings by Jibri session id, their media sessions by Jingle sid.

It takes Jibri IQs (start/stop from the focus), Jingle from the focus (the media session of a
recording, :mod:`.media`), and says through :class:`Signaling` what to send back. Several
recordings run at once, up to ``recorder.capacity``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from services.common import jibri
from services.common.jibri import Action, JibriIq, RecorderStatus, RecordingMode, Status
from services.common.jingle import Jingle
from services.common.logging import RateLimitedLogger
from services.common.tasks import Background

from . import metrics
from .config import RecorderSettings
from .media import MediaSession
from .recording import CompositeSettings, Recording, recover, safe_name
from .stream_policy import Address, StreamPolicy, StreamRefused

log = logging.getLogger("recorder")
_refusals = RateLimitedLogger(log)


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses ``host`` resolves to (the system's resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


class Signaling(Protocol):
    def publish_status(self, status: RecorderStatus) -> None: ...
    async def send_jingle(self, to: str, message: Jingle) -> bool: ...
    async def send_status(self, to: str, iq: JibriIq) -> bool: ...


class Refused(Exception):
    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition, self.text = condition, text


class Recorder:
    def __init__(self, settings: RecorderSettings, http_url: str) -> None:
        self.settings = settings
        self.http_url = http_url
        self.signaling: Signaling | None = None
        self.recordings: dict[str, Recording] = {}
        self.finished: list[Recording] = []
        self.sessions: dict[str, MediaSession] = {}  # Jingle sid -> session
        self.focus_of: dict[str, str] = {}  # session id -> the focus's JID that started it
        self.on_disk = recover(settings.output_dir)
        self.background = Background(log)
        self.stream_policy = StreamPolicy.from_settings(settings.rtmp_allowed_networks, settings.rtmp_allowed_urls)
        self.resolve: Callable[[str, int], Awaitable[list[Address]]] = resolve

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        self.background.spawn(coro, what)

    # ------------------------------------------------------------------ status
    def status(self) -> RecorderStatus:
        active = len(self.recordings)
        return RecorderStatus(
            busy=active >= self.settings.capacity, capacity=self.settings.capacity, active=active,
            http_url=self.http_url,
        )  # fmt: skip

    def _publish(self) -> None:
        metrics.ACTIVE.set(len(self.recordings))
        if self.signaling is not None:
            self.signaling.publish_status(self.status())

    # ------------------------------------------------------------------ Jibri IQs
    async def jibri_request(self, sender: str, iq: JibriIq) -> JibriIq:
        if iq.action is Action.START:
            return self._start(sender, iq, await self._stream_url(iq))
        if iq.action is Action.STOP:
            if not iq.session_id or iq.session_id not in self.recordings:
                raise Refused("item-not-found", "no such recording")
            await self.stop(iq.session_id)
            return JibriIq(status=Status.OFF, session_id=iq.session_id)
        raise Refused("bad-request", "action must be start or stop")

    async def _stream_url(self, iq: JibriIq) -> str | None:
        """Where a stream request's output goes, checked (:mod:`.stream_policy`); None for a file."""
        try:
            iq = iq.checked_start()
        except jibri.JibriFormatError as exc:
            raise Refused("bad-request", str(exc)) from None
        if iq.recording_mode is not RecordingMode.STREAM:
            return None
        assert iq.stream_id is not None
        if "://" not in iq.stream_id:  # a stream key under the operator's own base URL
            return f"{self.settings.rtmp_base_url.rstrip('/')}/{iq.stream_id}"
        policy = self.stream_policy
        try:
            target = policy.target(iq.stream_id)
            if target.address is not None:
                resolved = [target.address]
            else:
                try:
                    resolved = await asyncio.wait_for(
                        self.resolve(target.host, target.port), self.settings.rtmp_resolve_timeout
                    )
                except (OSError, TimeoutError, ValueError) as exc:
                    raise StreamRefused(f"cannot resolve {target.host}: {exc or 'timed out'}") from None
            return policy.connect_url(target, resolved)
        except StreamRefused as exc:
            metrics.REFUSED.labels("stream-target").inc()
            _refusals.warning("stream-target", "stream of %s refused: %s", iq.room, exc)
            raise Refused("not-acceptable", str(exc)) from None

    def _start(self, sender: str, iq: JibriIq, stream_url: str | None = None) -> JibriIq:
        session_id, room = iq.session_id, iq.room
        if not session_id or not room:
            raise Refused("bad-request", "start needs session_id and room")
        if session_id in self.recordings:
            return JibriIq(status=Status.PENDING, session_id=session_id)
        if len(self.recordings) >= self.settings.capacity:
            metrics.REFUSED.labels("busy").inc()
            raise Refused("resource-constraint", "recorder busy")
        try:
            iq = iq.checked_start()
        except jibri.JibriFormatError as exc:
            raise Refused("bad-request", str(exc)) from None
        assert iq.recording_mode is not None
        free = self.free_bytes() if iq.recording_mode is RecordingMode.FILE else None
        if free is not None and free < self.settings.min_free_bytes:
            metrics.REFUSED.labels("disk").inc()
            _refusals.warning("disk", "recording of %s refused: %d bytes free in %s", room, free,
                              self.settings.output_dir)  # fmt: skip
            raise Refused("resource-constraint", "the recorder's disk is full")
        if iq.recording_mode is RecordingMode.STREAM and stream_url is None:
            raise Refused("bad-request", "a stream needs its checked target")
        directory = Path(self.settings.output_dir) / f"{safe_name(room.split('@')[0])}-{session_id}"
        c = self.settings.composite
        recording = Recording(
            session_id, room, iq.recording_mode, directory, stream_url,
            CompositeSettings(c.width, c.height, c.fps, c.latency, c.video_bitrate, c.preset, c.crf,
                              self.settings.layout, c.file_rate_control, c.qp),
            on_first_media=self._first_media,
        )  # fmt: skip
        self.recordings[session_id] = recording
        self.focus_of[session_id] = sender
        metrics.STARTED.labels(iq.recording_mode.value).inc()
        log.info(
            "recording %s of %s started (%s) in %s",
            session_id,
            room,
            iq.recording_mode.value,
            directory,
        )
        self._publish()
        return JibriIq(status=Status.PENDING, session_id=iq.session_id, recording_mode=iq.recording_mode)

    def _first_media(self, recording: Recording) -> None:
        focus = self.focus_of.get(recording.session_id)
        if focus is not None and self.signaling is not None:
            update = JibriIq(status=Status.ON, session_id=recording.session_id, recording_mode=recording.mode)
            self._spawn(self.signaling.send_status(focus, update), f"status on {recording.session_id}")

    # ------------------------------------------------------------------ bounds
    def free_bytes(self) -> int | None:
        """Free bytes where recordings are written (None if that cannot be told)."""
        try:
            return shutil.disk_usage(self.settings.output_dir).free
        except OSError:
            return None

    def over_bounds(self, now: float, free: int | None) -> list[tuple[str, str]]:
        """Recordings to end, and why: older than ``max-duration``, writing files while the disk
        has less than ``min-free-bytes`` left (a stream writes nothing locally), or streams whose
        output failed (an RTMP server that refused or went away)."""
        out = []
        limit = self.settings.max_duration
        for session_id, recording in self.recordings.items():
            if limit and now - recording.started_at >= limit:
                out.append((session_id, f"the recording reached its maximum duration ({limit:.0f} s)"))
            elif free is not None and free < self.settings.min_free_bytes and recording.mode is RecordingMode.FILE:
                out.append((session_id, "the recorder's disk is full"))
            elif recording.mode is RecordingMode.STREAM and recording.composer.error:
                # (a file recording goes on: its per-participant files are still written) the
                # error's text stays in the recorder's log and view: it may name the URL and key
                out.append((session_id, "the live stream's connection failed"))
        return out

    async def watch(self, interval: float = 1.0) -> None:
        """End what is over its bounds, telling the focus (``status='off'`` with the reason)."""
        while True:
            await asyncio.sleep(interval)
            if not self.recordings:
                continue
            free = await asyncio.to_thread(self.free_bytes)
            for session_id, why in self.over_bounds(time.time(), free):
                log.warning("ending recording %s: %s", session_id, why)
                await self.end(session_id, why)

    async def end(self, session_id: str, why: str) -> None:
        """The recorder ends a recording on its own and tells the focus that started it."""
        focus = self.focus_of.get(session_id)
        recording = self.recordings.get(session_id)
        await self.stop(session_id, "stopped", why)
        if focus is not None and recording is not None and self.signaling is not None:
            update = JibriIq(status=Status.OFF, session_id=session_id, recording_mode=recording.mode,
                             failure_reason=why)  # fmt: skip
            await self.signaling.send_status(focus, update)

    async def stop(self, session_id: str, state: str = "finished", failure: str | None = None) -> None:
        recording = self.recordings.pop(session_id, None)
        if recording is None:
            return
        for sid in [sid for sid in self.sessions if jibri.session_of_sid(sid) == session_id]:
            await self.sessions.pop(sid).close()
        await asyncio.to_thread(recording.finish, state, failure)
        self.finished.append(recording)
        metrics.ENDED.labels(recording.state).inc()
        self.focus_of.pop(session_id, None)
        self._publish()

    # ------------------------------------------------------------------ Jingle
    async def jingle(self, sender: str, message: Jingle) -> None:
        session_id = jibri.session_of_sid(message.sid)
        recording = self.recordings.get(session_id or "")
        if recording is None:
            log.warning("jingle %s for no recording (sid %s)", message.action, message.sid)
            return
        if message.action == "session-initiate":
            for sid in [s for s in self.sessions if jibri.session_of_sid(s) == session_id]:
                await self.sessions.pop(sid).close()  # a new placement (bridge move, ICE restart)
            session = MediaSession(
                message.sid, message, recording.encoded, self.settings.max_receive_bitrate,
                on_speaker=recording.speaker_changed, constraints=recording.constraints,
            )  # fmt: skip
            self.sessions[message.sid] = session
            accept = await session.answer(responder=sender)
            recording.composer.on_arrangement = session.arrangement_changed
            if self.signaling is not None:
                await self.signaling.send_jingle(sender, accept)
            wanted = self.settings.bridge_channel
            if wanted == "always" or (wanted == "speaker" and self.settings.layout == "speaker"):
                session.open_bridge_channel(self.settings.bridge_channel_origin)
        elif message.action in ("source-add", "source-remove"):
            current = self.sessions.get(message.sid)
            if current is not None:
                await current.sources(message)
        elif message.action == "session-terminate":
            ended = self.sessions.pop(message.sid, None)
            if ended is not None:
                await ended.close()

    # ------------------------------------------------------------------ views
    def _bridge_channel(self, session_id: str) -> str:
        links = [s.bridge for sid, s in self.sessions.items() if jibri.session_of_sid(sid) == session_id]
        if any(link is not None and link.connected.is_set() for link in links):
            return "open"
        return "connecting" if any(link is not None for link in links) else "none"

    def _rtp_packets(self, session_id: str) -> int:
        return sum(s.packets for sid, s in self.sessions.items() if jibri.session_of_sid(sid) == session_id)

    def _rtp_packets_by_participant(self, session_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for sid, s in self.sessions.items():
            if jibri.session_of_sid(sid) == session_id:
                for owner, n in s.packets_by_owner().items():
                    out[owner] = out.get(owner, 0) + n
        return out

    def view(self) -> list[dict[str, object]]:
        live = [r.view() for r in list(self.recordings.values()) + self.finished]
        for v in live:
            if v["state"] == "recording":
                v["bridge_channel"] = self._bridge_channel(str(v["session_id"]))
                v["rtp_packets"] = self._rtp_packets(str(v["session_id"]))
                v["rtp_packets_by_participant"] = self._rtp_packets_by_participant(str(v["session_id"]))
        seen = {v["session_id"] for v in live}
        return live + [m for m in self.on_disk if m.get("session_id") not in seen]

    async def close(self) -> None:
        for session_id in list(self.recordings):
            await self.stop(session_id, "stopped", "recorder shut down")
        await self.background.close()
