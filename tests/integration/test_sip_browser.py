"""JsSIP in real Chromium calls into a meeting through the whole stack as a user starts it
(``python -m services.launcher up``: nginx ``/sip-ws`` in front of the SIP gateway): it registers
with digest credentials over SIP-over-WebSocket, calls ``sip:<room>@meet.jitsi`` where two
participants (aiortc, each sending its own tone) are, and both sides hear each other — tones
found in the decoded audio: the participants find the browser's tone (a WAV fed as its fake
microphone), the page finds the participants' tones in what it plays (WebAudio analyser)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page

from tests.integration.browser import BROWSER_MARKS, Browsers, LauncherStack, browsers, console_log
from tests.integration.participant import allow_loopback_ice
from tests.integration.test_sip_gateway import Listener, hears

pytestmark = [*BROWSER_MARKS, pytest.mark.peer]

JSSIP_DIR = Path(__file__).with_name("jssip")
BUNDLE = JSSIP_DIR / "node_modules" / "jssip.bundle.js"
BROWSER_TONE = 700.0
ROOM_TONES = {"bob": 440.0, "dave": 1200.0}
PINS = {"pinrtp": "2468", "pininfo": "1357"}  # dial-in PIN of each room

PAGE_SCRIPT = """
async ([wsUrl, room, password]) => {
  const state = window.sipState = {registered: false, confirmed: false, ended: null, freqs: [], errors: []};
  const socket = new JsSIP.WebSocketInterface(wsUrl);
  const ua = new JsSIP.UA({sockets: [socket], uri: 'sip:alice@meet.jitsi', password,
                           display_name: 'Alice Browser', register: true, session_timers: false});
  ua.on('registered', () => { state.registered = true; });
  ua.on('registrationFailed', (e) => state.errors.push('registration: ' + e.cause));
  ua.start();
  await new Promise((resolve) => { const t = setInterval(() => {
    if (state.registered || state.errors.length) { clearInterval(t); resolve(); } }, 100); });
  if (!state.registered) return state;
  const session = ua.call(`sip:${room}@meet.jitsi`, {
    mediaConstraints: {audio: true, video: false}, pcConfig: {iceServers: []}});
  session.on('confirmed', () => { state.confirmed = true; });
  session.on('failed', (e) => { state.ended = 'failed: ' + e.cause; });
  session.on('ended', (e) => { state.ended = 'ended: ' + e.cause; });
  window.sipSession = session;
  const watch = () => {
    const pc = session.connection;
    if (!pc) { setTimeout(watch, 100); return; }
    const attach = (stream) => {
      const el = new Audio(); el.srcObject = stream; el.muted = true; el.play().catch(() => {});
      const ctx = new AudioContext();
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 8192;
      ctx.createMediaStreamSource(stream).connect(analyser);
      const data = new Float32Array(analyser.frequencyBinCount);
      setInterval(() => {
        analyser.getFloatFrequencyData(data);
        let best = 0;
        for (let i = 8; i < data.length; i++) if (data[i] > data[best]) best = i;
        if (data[best] > -80) state.freqs.push(best * ctx.sampleRate / analyser.fftSize);
        if (state.freqs.length > 200) state.freqs.shift();
      }, 100);
    };
    const receivers = pc.getReceivers().filter((r) => r.track && r.track.kind === 'audio');
    if (receivers.length) attach(new MediaStream([receivers[0].track]));
    else pc.addEventListener('track', (e) => attach(new MediaStream([e.track])));
  };
  watch();
  return state;
}
"""


def tone_wav(path: Path, frequency: float, seconds: float = 10.0) -> None:
    rate = 48000
    t = np.arange(int(rate * seconds)) / rate
    pcm = (np.sin(2 * np.pi * frequency * t) * 12000).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


@pytest.fixture(scope="module")
def stack() -> Iterator[LauncherStack]:
    subprocess.run([str(JSSIP_DIR / "install.sh")], check=True, capture_output=True, timeout=300)
    run = Path(tempfile.mkdtemp(prefix="parley-sip-browser-"))
    saved = os.environ.get("SIP_ACCOUNTS")
    os.environ["SIP_ACCOUNTS"] = "alice:alice-browser-secret"
    try:
        s = LauncherStack(run / "run", env={"SIP_DIALIN_PINS": ",".join(f"{pin}:{room}" for room, pin in PINS.items())}
                          ).start(timeout=300)
    finally:
        if saved is None:
            os.environ.pop("SIP_ACCOUNTS", None)
        else:
            os.environ["SIP_ACCOUNTS"] = saved
    try:
        yield s
    finally:
        s.stop()


@contextlib.contextmanager
def participants(stack: LauncherStack, room: str, tones: dict[str, float]) -> Iterator[list[Listener]]:
    """One aiortc participant per ``nick -> tone`` in ``room`` of ``stack``, joined; they run on
    their own loop in a thread (Playwright's sync API holds this one) and leave afterwards."""
    offset = int(stack.front.rsplit(":", 1)[1]) - 8000
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    async def make() -> list[Listener]:
        return [Listener(nick, port=5222 + offset, domain="meet.jitsi", muc_domain="muc.meet.jitsi",
                         focus_jid="focus.meet.jitsi", tone=tone) for nick, tone in tones.items()]

    people: list[Listener] = on_loop(make())

    async def join_all() -> None:
        for p in people:
            await p.start(60)
            await p.join(f"{room}@muc.meet.jitsi", 60)

    async def stop_all() -> None:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)

    try:
        on_loop(join_all())
        yield people
    finally:
        on_loop(stop_all())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def jssip_call(pool: Browsers, stack: LauncherStack, wav: Path, user: str) -> tuple[Page, list[str]]:
    """A Chromium whose microphone plays ``wav``, its JsSIP registered as alice over ``/sip-ws``
    and calling ``sip:<user>@meet.jitsi``: the page and its console log."""
    page = pool.open(extra_args=[f"--use-file-for-fake-audio-capture={wav}"])
    lines = console_log(page)
    page.goto(stack.front + "/nginx-health")
    page.add_script_tag(path=str(BUNDLE))
    ws_url = stack.front.replace("http://", "ws://") + "/sip-ws"
    state = page.evaluate(PAGE_SCRIPT, [ws_url, user, "alice-browser-secret"])
    assert state["registered"], f"{state}\n{lines[-20:]}\n{stack.log()[-3000:]}"
    return page, lines


def sip_state(page: Page) -> dict[str, Any]:
    return page.evaluate("window.sipState")  # type: ignore[no-any-return]


def test_jssip_in_chromium_calls_into_a_meeting_of_two_and_both_sides_hear(stack: LauncherStack,
                                                                          tmp_path: Path) -> None:
    allow_loopback_ice()
    room = "sipbrowser"
    wav = tmp_path / "tone.wav"
    tone_wav(wav, BROWSER_TONE)
    with participants(stack, room, ROOM_TONES) as people, browsers() as pool:
        page, lines = jssip_call(pool, stack, wav, room)

        def page_state() -> dict[str, Any]:
            return sip_state(page)

        def heard_browser() -> bool:
            return all(hears(p.pcm.get("Alice Browser", []), 48000, BROWSER_TONE) for p in people)

        def browser_heard_room() -> bool:
            freqs = page_state()["freqs"][-20:]
            near = [f for f in freqs if any(abs(f - t) < 30 for t in ROOM_TONES.values())]
            return len(freqs) >= 10 and len(near) >= len(freqs) // 2

        deadline = 60.0
        ok = False
        while deadline > 0 and not ok:
            time.sleep(1.0)  # the participants' media runs meanwhile on their loop
            deadline -= 1.0
            ok = page_state()["confirmed"] and heard_browser() and browser_heard_room()
        state = page_state()
        assert ok, (f"page: confirmed={state['confirmed']} ended={state['ended']} freqs={state['freqs'][-10:]}; "
                    f"participants heard the browser: {heard_browser()}\n{lines[-20:]}\n{stack.log()[-4000:]}")
        page.evaluate("window.sipSession.terminate()")


@pytest.mark.parametrize(("transport", "room"), [("RFC2833", "pinrtp"), ("INFO", "pininfo")])
def test_jssip_in_chromium_dials_in_with_a_pin(stack: LauncherStack, tmp_path: Path, transport: str,
                                                room: str) -> None:
    """JsSIP calls the dial-in number, is answered at once (Opus, telephone-event/48000 accepted),
    and keys the room's PIN: as RFC 4733 events from Chromium's RTCDTMFSender (taken from the
    decrypted RTP before aiortc's decoder) or as SIP INFO ``application/dtmf-relay`` (JsSIP's
    default). The PIN joins that room: its participant hears the browser."""
    allow_loopback_ice()
    wav = tmp_path / "tone.wav"
    tone_wav(wav, BROWSER_TONE, seconds=30.0)
    with participants(stack, room, {"bob": ROOM_TONES["bob"]}) as [person], browsers() as pool:
        page, lines = jssip_call(pool, stack, wav, "dialin")

        def page_state() -> dict[str, Any]:
            return sip_state(page)

        for _ in range(60):
            if page_state()["confirmed"] or page_state()["ended"]:
                break
            time.sleep(0.5)
        assert page_state()["confirmed"], f"{page_state()}\n{lines[-20:]}\n{stack.log()[-3000:]}"
        if transport == "RFC2833":  # the answer accepted telephone-event/48000: Chromium can send events
            sdp = page.evaluate("window.sipSession.connection.remoteDescription.sdp")
            assert "telephone-event/48000" in sdp, sdp
        time.sleep(1.0)
        page.evaluate("([pin, transport]) => window.sipSession.sendDTMF(pin + '#', "
                      "{transportType: transport, duration: 160, interToneGap: 300})", [PINS[room], transport])

        def heard_browser() -> bool:
            return hears(person.pcm.get("Alice Browser", []), 48000, BROWSER_TONE)

        deadline = 60.0
        while deadline > 0 and not heard_browser():
            time.sleep(1.0)
            deadline -= 1.0
        assert heard_browser(), (f"page: {page_state()['ended']}; frames from the browser: "
                                 f"{len(person.pcm.get('Alice Browser', []))}\n{lines[-20:]}\n"
                                 f"{stack.log()[-4000:]}")
        # the PIN came the way this case sends it: every digit and '#' as RTP events, or none of them
        sip_http = int(stack.front.rsplit(":", 1)[1]) + 400  # the launcher's SIP admin port (8400)
        call = next(c for c in httpx.get(f"http://127.0.0.1:{sip_http}/calls", timeout=5).json()
                    if c.get("room") == room)
        expected = len(PINS[room]) + 1 if transport == "RFC2833" else 0
        assert call.get("dtmf_events", 0) == expected, call
        page.evaluate("window.sipSession.terminate()")
