"""The recorder with real processes: broker, bridge, focus, recorder; aiortc participants.

Three participants (each its own colour and tone) meet; one asks the focus to record with Jibri's
IQ; the focus starts the recorder, which joins as a hidden receive-only endpoint of the bridge and
writes one WebM per participant and a composed MKV. The outputs are checked with ffprobe, frames
of the composed file are decoded and each participant's colour found in its tile, and the mixed
audio is correlated with the three tones. Kill -9 of the recorder leaves playable files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import slixmpp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from services.common import jibri
from services.recorder import layout
from tests.integration.harness import ServiceProcess, free_port
from tests.integration.media_client import ColourTrack, ToneTrack
from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.test_focus_stack import MUC_DOMAIN, Stack, bridge_missing, xmpp_names

pytestmark = pytest.mark.skipif(
    bridge_missing() is not None or shutil.which("ffprobe") is None, reason="bridge or ffprobe missing"
)

RECORDER_PASSWORD = "recorder-test-secret"
COLOURS = {"alice": (220, 30, 30), "bob": (30, 200, 30), "carol": (40, 60, 230)}
TONES = {"alice": 440.0, "bob": 660.0, "carol": 880.0}
RECORD_SECONDS = 20.0
SYNC_BOUND = 0.080  # seconds: the recorder's own lip-sync error; see test_three_party_meeting_recorded


class RecorderStack(Stack):
    """The focus stack (one bridge) plus the recorder account and a recorder process."""

    def __init__(self) -> None:
        super().__init__(bridges=1)
        self.recorder: ServiceProcess | None = None
        self.recorder_http = 0
        self.output = Path(tempfile.mkdtemp(prefix="parley-recordings-"))

    def start_xmpp(self) -> ServiceProcess:
        env = {**xmpp_names(), "JIBRI_XMPP_PASSWORD": RECORDER_PASSWORD, "XMPP_C2S_PORT": str(self.c2s_port),
               "XMPP_HTTP_PORT": str(self.xmpp_http), "XMPP_BIND_ADDRESS": "127.0.0.1"}  # fmt: skip
        self.xmpp = ServiceProcess.python_module(
            "xmpp", "services.xmpp", env, health_url=f"http://127.0.0.1:{self.xmpp_http}/health"
        )
        self.xmpp.start()
        return self.xmpp

    def start(self) -> None:
        super().start()
        self.start_recorder()

    def start_recorder(self, extra: dict[str, str] | None = None) -> ServiceProcess:
        self.recorder_http = free_port()
        env = {
            **xmpp_names(),
            "XMPP_SERVER": "127.0.0.1",
            "XMPP_PORT": str(self.c2s_port),
            "JIBRI_XMPP_PASSWORD": RECORDER_PASSWORD,
            "JIBRI_INSTANCE_ID": "rec1",
            "JIBRI_RECORDING_DIR": str(self.output),
            "RECORDER_ICE_HOST_ADDRESSES": "127.0.0.1",
            "RECORDER_HTTP_HOST": "127.0.0.1",
            "RECORDER_HTTP_PORT": str(self.recorder_http),
            # the bridge advertises an unreachable WebSocket host here (the focus stack's):
            # the recorder opens its bridge channel on the bridge's public port instead
            "RECORDER_BRIDGE_CHANNEL_ORIGIN": f"ws://127.0.0.1:{self.bridge_ports['jvb1']['public']}",
            # the live-stream test's RTMP server (nginx-rtmp) listens on loopback
            "RECORDER_RTMP_ALLOWED_NETWORKS": "127.0.0.1/32",
            **(extra or {}),
        }
        self.recorder = ServiceProcess.python_module(
            "recorder", "services.recorder", env, health_url=f"http://127.0.0.1:{self.recorder_http}/health"
        )
        self.recorder.start(timeout=30)
        return self.recorder

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        super().stop()
        shutil.rmtree(self.output, ignore_errors=True)

    def logs(self) -> str:
        own = f"----- recorder\n{self.recorder.log(120)}\n" if self.recorder is not None else ""
        return own + super().logs()

    def recordings(self) -> list[dict[str, Any]]:
        return httpx.get(f"http://127.0.0.1:{self.recorder_http}/recordings", timeout=5).json()  # type: ignore[no-any-return]

    def wait_recorder_registered(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if "rec1" in self.get("/recordings")["recorders"]:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the recorder did not register\n{self.logs()}")


@pytest.fixture(scope="module")
def stack():
    with RecorderStack() as s:
        s.wait_recorder_registered()
        yield s


class StatusWatcher:
    """Records the focus's ``<jibri-recording-status/>`` as one participant sees it."""

    def __init__(self, p: JingleParticipant, room: str) -> None:
        self.seen: list[jibri.RecordingStatus] = []
        self.room = room
        p.add_event_handler("presence", self._presence)

    def _presence(self, stanza: slixmpp.Presence) -> None:
        if stanza["from"].bare != self.room or stanza["from"].resource != "focus":
            return
        el = jibri.find_recording_status(stanza.xml)
        if el is not None:
            self.seen.append(jibri.RecordingStatus.from_element(el))

    @property
    def last(self) -> jibri.Status | None:
        return self.seen[-1].status if self.seen else None


FLASH_EVERY, FLASH_FOR, BEEP = 2.0, 0.3, 3000.0


class SendLags:
    """How late a track's frames went out: aiortc's sender asks for the next frame right after
    it has encoded and sent the previous one, so the time between a frame's capture instant and
    the next ``recv`` call is that frame's capture-to-wire delay, which no receiver can see (the
    RTP timestamp says when it was captured, the packets arrive when it was sent)."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, float]] = []  # (capture instant, capture-to-wire delay)
        self._pending: float | None = None

    def captured(self, at: float) -> None:
        self._pending = at

    def asked(self) -> None:
        if self._pending is not None:
            self.frames.append((self._pending, time.time() - self._pending))
            self._pending = None

    def fastest(self, start: float, end: float) -> float:
        return min(lag for at, lag in self.frames if start <= at <= end)


class FlashTrack(MediaStreamTrack):
    """Carol's video: her colour, the right quarter white while a flash is on (times on the
    wall clock shared with :class:`BeepTrack`, so the two mark the same instants)."""

    kind = "video"

    def __init__(self, epoch: float, rgb: tuple[int, int, int], fps: int = 30) -> None:
        super().__init__()
        self.epoch, self.rgb, self.fps = epoch, rgb, fps
        self._start: float | None = None
        self._count = 0
        self.lags = SendLags()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self.lags.asked()
        if self._start is None:
            self._start = time.time()
        # like a camera, a starved sender skips frames rather than falling behind real time
        self._count = max(self._count, int((time.time() - self._start) * self.fps))
        at = self._start + self._count / self.fps
        await asyncio.sleep(max(0.0, at - time.time()))
        self.lags.captured(at)
        image = np.empty((120, 160, 3), np.uint8)
        image[:] = self.rgb
        if (at - self.epoch) % FLASH_EVERY < FLASH_FOR:
            image[:, 120:] = 255
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = round(self._count * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


class BeepTrack(MediaStreamTrack):
    """Carol's audio: her tone, replaced by a 3 kHz beep while a flash is on."""

    kind = "audio"

    def __init__(self, epoch: float, tone: float) -> None:
        super().__init__()
        self.epoch, self.tone = epoch, tone
        self._start: float | None = None
        self._samples = 0
        self.lags = SendLags()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self.lags.asked()
        if self._start is None:
            self._start = time.time()
        # like a sound card, a starved sender drops samples rather than falling behind real time
        late = time.time() - (self._start + self._samples / 48000)
        if late > 0.1:
            self._samples += int(late * 48000) // 960 * 960
        await asyncio.sleep(max(0.0, self._start + self._samples / 48000 - time.time()))
        self.lags.captured(self._start + self._samples / 48000)
        t = self._start + (np.arange(960) + self._samples) / 48000
        on = ((t - self.epoch) % FLASH_EVERY) < FLASH_FOR
        wave = np.where(on, np.sin(2 * np.pi * BEEP * t), np.sin(2 * np.pi * self.tone * t)) * 0.3
        frame = av.AudioFrame.from_ndarray(
            (wave * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, self._samples
        frame.time_base = fractions.Fraction(1, 48000)
        self._samples += 960
        return frame


def onsets(times: list[float], values: list[float], threshold: float) -> list[float]:
    """Times where ``values`` rise above ``threshold`` (a stream that starts above it has no
    onset there: it began mid-flash)."""
    out: list[float] = []
    on = bool(values) and values[0] > threshold
    for t, v in zip(times, values, strict=True):
        if v > threshold and not on:
            out.append(t)
        on = v > threshold
    return out


def flash_onsets(path: Path, region: Callable[[np.ndarray], np.ndarray]) -> list[float]:
    times, values = [], []
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            if frame.time is not None:
                times.append(float(frame.time))
                values.append(float(region(frame.to_ndarray(format="rgb24")).mean()))
    return onsets(times, values, 200.0)


def beep_onsets(path: Path) -> list[float]:
    """Onsets of the 3 kHz beep: its share of the energy in 5 ms windows, each window placed at
    its own frame's time (a gap in the stream, lost packets or a starved sender, stays a gap)."""
    times, values = [], []
    n = 240
    probe = np.exp(-2j * np.pi * BEEP * np.arange(n) / 48000)
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in c.decode(stream):
            if frame.time is None:
                continue
            at = float(frame.time)
            for f in resampler.resample(frame):
                signal = f.to_ndarray().reshape(-1).astype(np.float64)
                for i in range(0, len(signal) - n + 1, n):
                    w = signal[i : i + n]
                    times.append(at + i / 48000)
                    values.append(float(np.abs(np.sum(w * probe)) / (np.sqrt(np.sum(w**2) * n / 2) + 1e-9)))
                at += len(signal) / 48000
    return onsets(times, values, 0.5)


def av_offsets(video: list[float], audio: list[float]) -> list[float]:
    """For each flash, the distance to the nearest beep onset (video minus audio)."""
    out = []
    for v in video:
        nearest_audio = min(audio, key=lambda a: abs(a - v))
        if abs(nearest_audio - v) < FLASH_EVERY / 2:
            out.append(v - nearest_audio)
    return out


async def jibri_iq(p: JingleParticipant, room: str, request: jibri.JibriIq) -> jibri.JibriIq:
    iq = p.make_iq_set(ito=f"{room}/focus")
    iq.append(request.to_element())
    result = await iq.send(timeout=20)
    el = jibri.find_jibri(result.xml)
    assert el is not None, str(result)
    return jibri.JibriIq.from_element(el)


async def meeting(
    stack: RecorderStack,
    room: str,
    nicks: list[str],
    sync: str | None = None,
    sync_tracks: dict[str, FlashTrack | BeepTrack] | None = None,
) -> list[JingleParticipant]:
    """``nicks`` meet; ``sync`` (one of them) sends flashes and beeps at the same instants (its
    tracks, by kind, into ``sync_tracks``)."""
    made = sync_tracks if sync_tracks is not None else {}
    people = []
    epoch = time.time()
    for nick in nicks:
        make: Callable[[str], MediaStreamTrack] | None = None
        if nick == sync:
            rgb, tone = COLOURS[nick], TONES[nick]

            def make(kind: str, rgb: tuple[int, int, int] = rgb, tone: float = tone) -> MediaStreamTrack:
                made[kind] = FlashTrack(epoch, rgb) if kind == "video" else BeepTrack(epoch, tone)
                return made[kind]

        p = stack.participant(nick, rgb=COLOURS[nick], tone=TONES[nick], make_track=make)
        await p.start()
        await p.join(room)
        people.append(p)
    ok = await wait_until(
        lambda: all(min(p.frames_from(o.nick)) >= 5 for p in people for o in people if o is not p), 30
    )
    assert ok, stack.logs()
    return people


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def duration_of(path: Path) -> float:
    """Duration from the last packet's time (files cut by a crash have no duration field)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    times = [float(x.split(",")[0]) for x in out.stdout.split() if x and x.split(",")[0] not in ("", "N/A")]
    return max(times) - min(times) if times else 0.0


def nearest(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda n: float(np.sum((np.array(COLOURS[n]) - rgb) ** 2)))


def tile_colours(
    path: Path, at_seconds: list[float], n: int, width: int = 640, height: int = 360
) -> list[set[str]]:
    tiles = layout.grid(n, width, height)
    found: list[set[str]] = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        wanted = list(at_seconds)
        for frame in c.decode(stream):
            if not wanted:
                break
            if frame.time is None or frame.time < wanted[0]:
                continue
            wanted.pop(0)
            image = frame.to_ndarray(format="rgb24")
            colours = set()
            for t in tiles:
                # the middle third of the tile's height, left half (away from the moving bar
                # the test pattern draws, most of the time, and from the name label)
                patch = image[t.y + t.h // 3 : t.y + 2 * t.h // 3, t.x + t.w // 8 : t.x + t.w // 2]
                colours.add(nearest(np.median(patch.reshape(-1, 3), axis=0)))
            found.append(colours)
    return found


def nearest_tile_colour(path: Path, tile: layout.Rect, at: float = 6.0) -> str:
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            if frame.time is not None and frame.time >= at:
                image = frame.to_ndarray(format="rgb24")
                patch = image[
                    tile.y + tile.h // 3 : tile.y + 2 * tile.h // 3,
                    tile.x + tile.w // 8 : tile.x + tile.w // 2,
                ]
                return nearest(np.median(patch.reshape(-1, 3), axis=0))
    raise AssertionError("no frame")


def tone_strengths(path: Path, start: float, seconds: float) -> dict[str, float]:
    """Normalised correlation of the composed audio with each participant's tone (and with a
    frequency nobody sends, as a control)."""
    chunks = []
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        for frame in c.decode(stream):
            if frame.time is None or frame.time < start:
                continue
            if frame.time > start + seconds:
                break
            chunks.append(frame.to_ndarray().astype(np.float64).reshape(frame.samples, -1).mean(axis=1)
                          if frame.format.is_packed else frame.to_ndarray()[0].astype(np.float64))  # fmt: skip
    signal = np.concatenate(chunks)
    assert len(signal) > rate, "no audio decoded"
    t = np.arange(len(signal)) / rate
    energy = np.sqrt(np.sum(signal**2)) + 1e-9
    out = {}
    for name, f in {**TONES, "control": 1234.5}.items():
        c = np.abs(np.sum(signal * np.exp(-2j * np.pi * f * t)))
        out[name] = float(c / energy / np.sqrt(len(signal) / 2))
    return out


async def test_three_party_meeting_recorded(stack: RecorderStack) -> None:
    room = f"rec3@{MUC_DOMAIN}"
    sync_tracks: dict[str, FlashTrack | BeepTrack] = {}
    people = await meeting(stack, room, ["alice", "bob", "carol"], sync="carol", sync_tracks=sync_tracks)
    watcher = StatusWatcher(people[1], room)
    try:
        # a stranger cannot start a recording in a room it is not in
        answer = await jibri_iq(
            people[0], room, jibri.JibriIq(action=jibri.Action.START, recording_mode=jibri.RecordingMode.FILE)
        )
        assert answer.status in (jibri.Status.PENDING, jibri.Status.ON) and answer.session_id
        session_id = answer.session_id
        assert await wait_until(lambda: watcher.last is jibri.Status.ON, 20), (watcher.seen, stack.logs())
        recording_from = time.time()
        await asyncio.sleep(RECORD_SECONDS)
        recording_to = time.time()
        # every participant's media reaches the recorder, counted by participant
        by_participant = recording_view(stack, session_id).get("rtp_packets_by_participant", {})
        assert {p for p, n in by_participant.items() if n > 0} == {"alice", "bob", "carol"}, by_participant
        # a joiner is told that recording is on
        late = stack.participant("dave", rgb=(200, 200, 30), tone=990.0, media=False)
        late_watcher = StatusWatcher(late, room)
        await late.start()
        await late.join(room)
        assert await wait_until(lambda: late_watcher.last is jibri.Status.ON, 10), late_watcher.seen
        await late.stop()
        stopped = await jibri_iq(  # by the moderator (the room's first participant)
            people[0], room, jibri.JibriIq(action=jibri.Action.STOP, session_id=session_id)
        )
        assert stopped.status is jibri.Status.OFF
        assert await wait_until(lambda: watcher.last is jibri.Status.OFF, 20), watcher.seen
    finally:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)

    views = [r for r in stack.recordings() if r["session_id"] == session_id]
    assert views and views[0]["state"] == "finished", (views, stack.logs())
    directory = Path(views[0]["directory"])
    names = {f["name"] for f in views[0]["files"]}
    assert {"alice.webm", "bob.webm", "carol.webm", "composed.mkv"} <= names, (names, stack.logs())

    # the files cover the recording: at least the 20 s we waited, at most its whole wall time
    wall = views[0]["ended_at"] - views[0]["started_at"]
    for nick in COLOURS:
        info = ffprobe(directory / f"{nick}.webm")
        codecs = sorted(s["codec_name"] for s in info["streams"])
        assert codecs == ["opus", "vp8"], info
        duration = float(info["format"]["duration"])
        assert RECORD_SECONDS - 3 <= duration <= wall + 1, (nick, duration, wall)

    composed = directory / "composed.mkv"
    info = ffprobe(composed)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"], info
    assert RECORD_SECONDS - 3 <= float(info["format"]["duration"]) <= wall + 1, (info["format"], wall)
    for colours in tile_colours(composed, [6.0, 12.0, 18.0], 3):
        assert colours == set(COLOURS), colours
    strengths = tone_strengths(composed, 4.0, 10.0)
    for nick in TONES:
        assert strengths[nick] > 5 * strengths["control"], strengths

    # lip sync: carol flashes and beeps at the same instants, every 2 s
    beeps = beep_onsets(directory / "carol.webm")
    flashes = flash_onsets(directory / "carol.webm", lambda image: image[:, -image.shape[1] // 8 :])
    offsets = av_offsets(flashes, beeps)
    assert len(offsets) >= RECORD_SECONDS / FLASH_EVERY - 3, (flashes, beeps)
    # The recorder can only keep the sync the packets carry: it places each packet by its RTP
    # timestamp and the fastest arrival (services/recorder/sync.py). aiortc stamps a frame at
    # capture but sends it after encoding, so on a loaded machine carol's video leaves later than
    # her audio (measured up to 360 ms on a two-core CI machine). That sender skew is measured at
    # carol's tracks and taken out; what is left is the recorder's own error.
    skew = sync_tracks["video"].lags.fastest(recording_from, recording_to) - sync_tracks[
        "audio"
    ].lags.fastest(recording_from, recording_to)
    print(
        "lip sync, carol.webm (video - audio, ms):",
        [round(o * 1000) for o in offsets],
        "sender skew (ms):",
        round(skew * 1000),
    )
    assert abs(statistics.median(offsets) - skew) <= SYNC_BOUND, (offsets, skew)
    # and the offset does not wander. One flash may be seen a few frames late: on a starved
    # machine a video frame is lost now and then on loopback, and the picture stays broken until
    # the next key frame (measured: one flash of ten at +100 ms at load 15-40); that is loss,
    # not drift, and the audio and the other flashes keep their place.
    centre = statistics.median(offsets)
    assert sum(abs(o - centre) > 0.020 for o in offsets) <= 1, offsets
    carol = next(t for t in layout.grid(3, 640, 360) if nearest_tile_colour(composed, t) == "carol")
    fitted = layout.fit(160, 120, carol)
    flashes = flash_onsets(
        composed,
        lambda image: image[
            fitted.y : fitted.y + fitted.h, fitted.x + fitted.w * 7 // 8 : fitted.x + fitted.w
        ],
    )
    offsets = av_offsets(flashes, beep_onsets(composed))
    assert len(offsets) >= RECORD_SECONDS / FLASH_EVERY - 3, offsets
    print("lip sync, composed.mkv (video - audio, ms):", [round(o * 1000) for o in offsets])
    # a picture shows in the output frame nearest its capture: up to half a frame early or late
    assert abs(statistics.median(offsets) - skew) <= SYNC_BOUND + 0.5 / 15, (offsets, skew)


def composed_frames(stack: RecorderStack, session_id: str | None) -> int:
    with contextlib.suppress(httpx.HTTPError):
        for view in stack.recordings():
            if view["session_id"] == session_id:
                return int(view["composed_frames"])
    return 0


def decodable_frames(path: Path, kind: str, limit: int = 1000) -> int:
    n = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        for _ in c.decode(stream):
            n += 1
            if n >= limit:
                break
    return n


async def test_kill_9_leaves_playable_files_and_the_room_is_told(stack: RecorderStack) -> None:
    room = f"killed@{MUC_DOMAIN}"
    people = await meeting(stack, room, ["alice", "bob"])
    watcher = StatusWatcher(people[0], room)
    try:
        answer = await jibri_iq(people[0], room, jibri.JibriIq(action=jibri.Action.START))
        session_id = answer.session_id
        assert session_id
        assert await wait_until(lambda: watcher.last is jibri.Status.ON, 20), (watcher.seen, stack.logs())
        assert await wait_until(lambda: composed_frames(stack, session_id) >= 8 * 15, 60), stack.logs()
        directory = next(stack.output.glob(f"killed-{session_id}"))
        assert stack.recorder is not None
        stack.recorder.kill()  # SIGKILL: nothing is finalised
        # the broker drops the recorder from the brewery; the focus tells the room
        assert await wait_until(lambda: watcher.last is jibri.Status.OFF, 30), (watcher.seen, stack.logs())
        assert watcher.seen[-1].failure_reason
    finally:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)
        stack.start_recorder()
        stack.wait_recorder_registered()
    for name in ("alice.webm", "bob.webm", "composed.mkv"):
        path = directory / name
        info = ffprobe(path)
        assert len(info["streams"]) == 2, (name, info)
        assert duration_of(path) > 2, (name, duration_of(path))
        assert decodable_frames(path, "video") > 20, name
        assert decodable_frames(path, "audio") > 20, name
    # the new recorder process lists it, marked interrupted
    [view] = [r for r in stack.recordings() if r["session_id"] == session_id]
    assert view["state"] == "interrupted" and {f["name"] for f in view["files"]} >= {
        "alice.webm",
        "composed.mkv",
    }


RTMP_NGINX_CONF = """
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
{user}
worker_processes 1;
daemon off;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record all;
            record_path {dir}/flv;
            record_unique off;
        }}
    }}
}}
"""


class RtmpServer:
    """Debian's nginx with libnginx-mod-rtmp: receives the stream and records what it got."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="parley-rtmp-"))
        (self.dir / "flv").mkdir()
        self.dir.chmod(0o777)
        (self.dir / "flv").chmod(0o777)
        self.port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(RTMP_NGINX_CONF.format(dir=self.dir, port=self.port, user=user))
        self.proc = ServiceProcess(
            "nginx-rtmp", ["/usr/sbin/nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")], {},
            tcp_port=self.port,
        )  # fmt: skip

    def __enter__(self) -> RtmpServer:
        self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"


@pytest.mark.peer
@pytest.mark.skipif(
    not Path("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists(), reason="libnginx-mod-rtmp missing"
)
async def test_stream_mode_pushes_the_composed_meeting_over_rtmp(stack: RecorderStack) -> None:
    room = f"live@{MUC_DOMAIN}"
    with RtmpServer() as rtmp:
        people = await meeting(stack, room, ["alice", "bob"])
        watcher = StatusWatcher(people[1], room)
        try:
            start = jibri.JibriIq(action=jibri.Action.START, recording_mode=jibri.RecordingMode.STREAM,
                                  stream_id=rtmp.url("meeting"))  # fmt: skip
            answer = await jibri_iq(people[0], room, start)
            assert answer.session_id and answer.recording_mode is jibri.RecordingMode.STREAM
            assert await wait_until(lambda: watcher.last is jibri.Status.ON, 20), (watcher.seen, stack.logs())
            assert watcher.seen[-1].recording_mode is jibri.RecordingMode.STREAM
            await asyncio.sleep(8)
            # a viewer of the live stream (ffprobe pulls it from nginx)
            live = await asyncio.to_thread(
                subprocess.run,
                ["ffprobe", "-v", "error", "-show_streams", "-of", "json", rtmp.url("meeting")],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            codecs = sorted(s["codec_name"] for s in json.loads(live.stdout or "{}").get("streams", []))
            assert codecs == ["aac", "h264"], (live.stderr, stack.logs())
            await jibri_iq(
                people[0], room, jibri.JibriIq(action=jibri.Action.STOP, session_id=answer.session_id)
            )
            assert await wait_until(lambda: watcher.last is jibri.Status.OFF, 20), watcher.seen
        finally:
            await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)
        recorded = rtmp.dir / "flv" / "meeting.flv"
        assert await wait_until(recorded.exists, 10), list((rtmp.dir / "flv").iterdir())
        assert sorted(s["codec_name"] for s in ffprobe(recorded)["streams"]) == ["aac", "h264"]
        assert duration_of(recorded) > 6
        for colours in tile_colours(recorded, [3.0, 6.0], 2):
            assert colours == {"alice", "bob"}, colours


async def test_two_meetings_recorded_at_once_by_one_recorder(stack: RecorderStack) -> None:
    rooms = [f"twin{i}@{MUC_DOMAIN}" for i in range(2)]
    groups = [
        await meeting(stack, room, nicks)
        for room, nicks in zip(rooms, (["alice", "bob"], ["carol", "bob"]), strict=True)
    ]
    try:
        answers = [
            await jibri_iq(g[0], room, jibri.JibriIq(action=jibri.Action.START))
            for g, room in zip(groups, rooms, strict=True)
        ]
        ids = [a.session_id for a in answers]
        assert all(ids) and ids[0] != ids[1]
        # one recorder process runs both, and says so in its presence
        view = stack.get("/recordings")
        assert {r["recorder"] for r in view["recordings"] if r["session_id"] in ids} == {"rec1"}
        assert await wait_until(lambda: stack.get("/recordings")["recorders"]["rec1"]["active"] == 2, 10), (
            stack.get("/recordings")
        )
        assert await wait_until(lambda: min(composed_frames(stack, i) for i in ids) >= 6 * 15, 60), (
            stack.logs()
        )
        # the last participant leaving ends the meeting: the focus stops its recording
        await asyncio.gather(*(p.stop() for p in groups[0]))
        assert await wait_until(
            lambda: any(r["session_id"] == ids[0] and r["state"] == "finished" for r in stack.recordings()),
            30,
        ), stack.logs()
        assert any(r["session_id"] == ids[1] and r["state"] == "recording" for r in stack.recordings())
        await jibri_iq(groups[1][0], rooms[1], jibri.JibriIq(action=jibri.Action.STOP, session_id=ids[1]))
    finally:
        await asyncio.gather(*(p.stop() for g in groups for p in g), return_exceptions=True)
    views = {r["session_id"]: r for r in stack.recordings() if r["session_id"] in ids}
    assert {v["state"] for v in views.values()} == {"finished"}
    names = [{f["name"] for f in v["files"]} for v in (views[ids[0]], views[ids[1]])]
    assert names[0] >= {"alice.webm", "bob.webm", "composed.mkv"}, names
    assert names[1] >= {"carol.webm", "bob.webm", "composed.mkv"}, names
    for v in views.values():
        assert duration_of(Path(v["directory"]) / "composed.mkv") > 3


def recording_view(stack: RecorderStack, session_id: str | None) -> dict[str, Any]:
    with contextlib.suppress(httpx.HTTPError):
        for view in stack.recordings():
            if view["session_id"] == session_id:
                return view
    return {}


LOUD, QUIET = 0.3, 0.0002  # about -13 and -77 dBov: voiced, and below the bridge's voice level


async def test_speaker_layout_follows_the_bridge_dominant_speaker(stack: RecorderStack) -> None:
    """recorder.layout = speaker: carol (the last to join, so not the layout's fallback) starts
    speaking once the recording runs; the bridge names her dominant speaker over the recorder's
    bridge channel, and her colour fills the large tile of the composed file."""
    assert stack.recorder is not None
    stack.recorder.stop()
    stack.start_recorder({"RECORDER_LAYOUT": "speaker"})
    stack.wait_recorder_registered()
    room = f"speak@{MUC_DOMAIN}"
    people: list[JingleParticipant] = []
    try:
        for nick in ("alice", "bob", "carol"):

            def make(kind: str, nick: str = nick) -> MediaStreamTrack:
                return ToneTrack(TONES[nick], QUIET) if kind == "audio" else ColourTrack(COLOURS[nick])

            p = stack.participant(nick, rgb=COLOURS[nick], tone=TONES[nick], make_track=make)
            await p.start()
            await p.join(room)
            people.append(p)
        ok = await wait_until(
            lambda: all(min(p.frames_from(o.nick)) >= 5 for p in people for o in people if o is not p), 30
        )
        assert ok, stack.logs()
        watcher = StatusWatcher(people[0], room)
        answer = await jibri_iq(people[0], room, jibri.JibriIq(action=jibri.Action.START))
        session_id = answer.session_id
        assert await wait_until(lambda: watcher.last is jibri.Status.ON, 20), (watcher.seen, stack.logs())
        assert await wait_until(
            lambda: recording_view(stack, session_id).get("bridge_channel") == "open", 20
        ), (
            recording_view(stack, session_id),
            stack.logs(),
        )
        carol = people[2]
        assert carol.pc is not None
        audio = next(t for t in carol.pc.getTransceivers() if t.mid == "audio")
        audio.sender.replaceTrack(ToneTrack(TONES["carol"], LOUD))
        await asyncio.sleep(12)
        await jibri_iq(people[0], room, jibri.JibriIq(action=jibri.Action.STOP, session_id=session_id))
        assert await wait_until(lambda: recording_view(stack, session_id).get("state") == "finished", 30)
    finally:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)
        stack.recorder.stop()
        stack.start_recorder()
        stack.wait_recorder_registered()
    composed = Path(recording_view(stack, session_id)["directory"]) / "composed.mkv"
    end = duration_of(composed)
    tiles = layout.speaker(3, 640, 360)
    for at in (end - 4.0, end - 2.0):
        assert nearest_tile_colour(composed, tiles[0], at) == "carol", (at, end, stack.logs())
        assert {nearest_tile_colour(composed, t, at) for t in tiles[1:]} == {"alice", "bob"}


async def test_a_second_of_packet_loss_keeps_its_place_on_the_timeline(stack: RecorderStack) -> None:
    """Carol's sender drops every RTP packet for one second that covers one of her beeps (and
    flashes); in her WebM and in the composed file the beeps after the gap stay on their
    2-second grid (the gap is not closed up), and the beep inside the gap is missing."""
    room = f"lossy@{MUC_DOMAIN}"
    sync_tracks: dict[str, FlashTrack | BeepTrack] = {}
    people = await meeting(stack, room, ["alice", "carol"], sync="carol", sync_tracks=sync_tracks)
    epoch = sync_tracks["video"].epoch
    watcher = StatusWatcher(people[0], room)
    carol = people[1]
    assert carol.pc is not None
    transport = carol.pc.getSenders()[0].transport
    send_rtp = transport._send_rtp
    dropping = False
    dropped = 0

    async def lossy_send_rtp(data: bytes) -> None:
        nonlocal dropped
        if dropping:
            dropped += 1
            return
        await send_rtp(data)

    transport._send_rtp = lossy_send_rtp  # type: ignore[method-assign]
    try:
        answer = await jibri_iq(people[0], room, jibri.JibriIq(action=jibri.Action.START))
        session_id = answer.session_id
        assert await wait_until(lambda: watcher.last is jibri.Status.ON, 20), (watcher.seen, stack.logs())
        await asyncio.sleep(6)
        # from 0.3 s before a beep to 0.7 s after its start: that beep is never sent
        now = time.time()
        beep = epoch + (int((now - epoch) / FLASH_EVERY) + 2) * FLASH_EVERY
        await asyncio.sleep(beep - 0.3 - time.time())
        dropping = True
        await asyncio.sleep(1.0)
        dropping = False
        await asyncio.sleep(8)
        await jibri_iq(people[0], room, jibri.JibriIq(action=jibri.Action.STOP, session_id=session_id))
        assert await wait_until(lambda: recording_view(stack, session_id).get("state") == "finished", 30)
    finally:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)
    assert dropped > 10, dropped  # the sender really went quiet (fewer than 50 a second when starved)
    directory = Path(recording_view(stack, session_id)["directory"])
    for name in ("carol.webm", "composed.mkv"):
        found = beep_onsets(directory / name)
        onsets = [o for i, o in enumerate(found) if i == 0 or o - found[i - 1] > 1.0]  # one per beep
        assert len(onsets) >= 5, (name, onsets)
        # on one grid: every onset a whole number of periods from the others. A gap closed up
        # would move the later ones half a period off it; what is allowed is the jitter of the
        # arrival-time mapping on a starved machine (measured up to 0.25 s at load 35).
        phases = [((o - onsets[0]) + FLASH_EVERY / 2) % FLASH_EVERY - FLASH_EVERY / 2 for o in onsets]
        centre = statistics.median(phases)
        assert max(abs(p - centre) for p in phases) <= 0.4, (name, [round(p, 3) for p in phases], onsets)
        # and one period has no beep: the one that was never sent
        steps = [round((b - a) / FLASH_EVERY) for a, b in itertools.pairwise(onsets)]
        assert steps.count(2) == 1 and set(steps) <= {1, 2}, (name, steps, onsets)
