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
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import slixmpp

from services.common import jibri
from services.recorder import layout
from tests.integration.harness import ServiceProcess, free_port
from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.test_focus_stack import MUC_DOMAIN, Stack, bridge_missing, xmpp_names

pytestmark = pytest.mark.skipif(
    bridge_missing() is not None or shutil.which("ffprobe") is None, reason="bridge or ffprobe missing"
)

RECORDER_PASSWORD = "recorder-test-secret"
COLOURS = {"alice": (220, 30, 30), "bob": (30, 200, 30), "carol": (40, 60, 230)}
TONES = {"alice": 440.0, "bob": 660.0, "carol": 880.0}
RECORD_SECONDS = 20.0


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

    def start_recorder(self) -> ServiceProcess:
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


async def jibri_iq(p: JingleParticipant, room: str, request: jibri.JibriIq) -> jibri.JibriIq:
    iq = p.make_iq_set(ito=f"{room}/focus")
    iq.append(request.to_element())
    result = await iq.send(timeout=20)
    el = jibri.find_jibri(result.xml)
    assert el is not None, str(result)
    return jibri.JibriIq.from_element(el)


async def meeting(stack: RecorderStack, room: str, nicks: list[str]) -> list[JingleParticipant]:
    people = []
    for nick in nicks:
        p = stack.participant(nick, rgb=COLOURS[nick], tone=TONES[nick])
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
    people = await meeting(stack, room, ["alice", "bob", "carol"])
    watcher = StatusWatcher(people[1], room)
    try:
        # a stranger cannot start a recording in a room it is not in
        answer = await jibri_iq(
            people[0], room, jibri.JibriIq(action=jibri.Action.START, recording_mode=jibri.RecordingMode.FILE)
        )
        assert answer.status in (jibri.Status.PENDING, jibri.Status.ON) and answer.session_id
        session_id = answer.session_id
        assert await wait_until(lambda: watcher.last is jibri.Status.ON, 20), (watcher.seen, stack.logs())
        await asyncio.sleep(RECORD_SECONDS)
        # a joiner is told that recording is on
        late = stack.participant("dave", rgb=(200, 200, 30), tone=990.0, media=False)
        late_watcher = StatusWatcher(late, room)
        await late.start()
        await late.join(room)
        assert await wait_until(lambda: late_watcher.last is jibri.Status.ON, 10), late_watcher.seen
        await late.stop()
        stopped = await jibri_iq(
            people[2], room, jibri.JibriIq(action=jibri.Action.STOP, session_id=session_id)
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

    for nick in COLOURS:
        info = ffprobe(directory / f"{nick}.webm")
        codecs = sorted(s["codec_name"] for s in info["streams"])
        assert codecs == ["opus", "vp8"], info
        assert RECORD_SECONDS - 3 <= float(info["format"]["duration"]) <= RECORD_SECONDS + 15, info["format"]

    composed = directory / "composed.mkv"
    info = ffprobe(composed)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"], info
    assert RECORD_SECONDS - 3 <= float(info["format"]["duration"]) <= RECORD_SECONDS + 15, info["format"]
    for colours in tile_colours(composed, [6.0, 12.0, 18.0], 3):
        assert colours == set(COLOURS), colours
    strengths = tone_strengths(composed, 4.0, 10.0)
    for nick in TONES:
        assert strengths[nick] > 5 * strengths["control"], strengths


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
        await asyncio.sleep(8)
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
        assert duration_of(path) > 4, (name, duration_of(path))
        assert decodable_frames(path, "video") > 30, name
        assert decodable_frames(path, "audio") > 30, name
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
