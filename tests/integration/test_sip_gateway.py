"""The SIP gateway in a running stack (broker, bridge, focus, gateway as processes): a SIP call
into a room makes a visible participant that hears the room and is heard, over plain RTP with
G.711; REGISTER over UDP, TCP and WebSocket with the WebSocket admin listing the connection;
CANCEL, re-INVITE and BYE on a real call."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import time
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx
import numpy as np
import pytest
import slixmpp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from websockets.asyncio.client import connect as ws_connect

from services.sip import audio, dtmf, msrp
from tests.integration.harness import ServiceProcess, free_port, free_tcp_udp_port
from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.sip_client import ACCOUNTS, DOMAIN, SipClient, get_json, request
from tests.integration.test_focus_stack import MUC_DOMAIN, Stack, bridge_missing, xmpp_names

pytestmark = pytest.mark.skipif(bridge_missing() is not None, reason=bridge_missing() or "")

ROOM_TONE = 550.0  # what the browser-side participant sends
CALLER_TONE = 1000.0  # what the SIP caller sends
DIAL_IN_PINS = "4321:pinroom"


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    if len(pcm) < rate // 10:
        return 0.0
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    spectrum[:10] = 0
    return float(np.argmax(spectrum) * rate / len(pcm))


def hears(chunks: list[np.ndarray], rate: int, tone: float) -> bool:
    """More than 100 chunks of audio, and ``tone`` dominates the last 50."""
    return len(chunks) > 100 and abs(dominant_frequency(np.concatenate(chunks[-50:]), rate) - tone) < 30


GATEWAY_PASSWORD = secrets.token_urlsafe(12)  # the gateway's account jigasi@auth.<domain>


class SipStack(Stack):
    def __init__(self) -> None:
        super().__init__(bridges=1, xmpp_env={"JIGASI_XMPP_PASSWORD": GATEWAY_PASSWORD})
        self.sip: ServiceProcess | None = None
        self.sip_ports: dict[str, int] = {}

    def start(self) -> None:
        super().start()
        self.sip_ports = {"sip": free_tcp_udp_port(), "ws": free_port(), "http": free_port()}
        env = {
            **xmpp_names(),
            "XMPP_SERVER": "127.0.0.1",
            "XMPP_PORT": str(self.c2s_port),
            "SIP_ACCOUNTS": ACCOUNTS,
            "SIP_PORT": str(self.sip_ports["sip"]),
            "SIP_UDP_HOST": "127.0.0.1",
            "SIP_TCP_HOST": "127.0.0.1",
            "SIP_WS_PORT": str(self.sip_ports["ws"]),
            "SIP_HTTP_PORT": str(self.sip_ports["http"]),
            "SIP_ICE_HOST_ADDRESSES": "127.0.0.1",
            "SIP_RTP_HOST": "127.0.0.1",
            "SIP_DIALIN_PINS": DIAL_IN_PINS,
            "JIGASI_XMPP_PASSWORD": GATEWAY_PASSWORD,
        }
        self.sip = ServiceProcess.python_module(
            "sip", "services.sip", env, health_url=f"http://127.0.0.1:{self.sip_ports['http']}/health")
        self.sip.start()

    def stop(self) -> None:
        if self.sip is not None:
            self.sip.stop()
        super().stop()

    def logs(self) -> str:
        sip = f"----- sip\n{self.sip.log(120)}\n" if self.sip else ""
        return sip + super().logs()


@pytest.fixture(scope="module")
def stack() -> Iterator[SipStack]:
    with SipStack() as s:
        yield s


class Listener(JingleParticipant):
    """A participant that keeps the audio it decodes, per sender."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.pcm: dict[str, list[np.ndarray]] = {}

    async def _consume(self, track: MediaStreamTrack, into: object) -> None:  # type: ignore[override]
        owner = next((o for o, r in self.received.items() if r is into), "?")
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if frame.__class__.__name__ == "AudioFrame":
                    into.audio_frames += 1  # type: ignore[attr-defined]
                    self.pcm.setdefault(owner, []).append(audio.to_mono(frame.to_ndarray(), len(frame.layout.channels)))  # type: ignore[attr-defined]


class RtpPhone:
    """A plain-RTP G.711 phone: sends a tone, keeps what it receives."""

    def __init__(self, tone: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.tone = tone
        self.remote: tuple[str, int] | None = None
        self.payload_type: int | None = None  # the G.711 payload type of the answer
        self.received: list[np.ndarray] = []
        self._task: asyncio.Task[None] | None = None
        self.keyed: list[str] = []  # digits to send as RFC 4733 telephone-events

    def key(self, digits: str) -> None:
        self.keyed.extend(digits)

    def offer(self) -> bytes:
        return (f"v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                f"a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n").encode()

    def start(self, answer: bytes) -> int:
        offer = audio.parse_plain_offer(answer.decode())
        pt = audio.choose_g711(offer)
        assert pt is not None
        self.payload_type = pt
        self.remote = (offer.address, offer.port)
        self._task = asyncio.ensure_future(self._run(pt))
        return pt

    async def _run(self, pt: int) -> None:
        loop = asyncio.get_running_loop()
        seq, ts, n = 0, 0, 0
        start = time.monotonic()
        event_packets = 0
        event_ts = 0
        while True:
            assert self.remote is not None
            if self.keyed and event_packets == 0:
                event_packets, event_ts = 1, ts
            if event_packets:
                # RFC 4733 §2.5: one timestamp per event, growing duration, the end sent three times;
                # audio paused for the event and a gap after it
                digit = self.keyed[0]
                if event_packets <= 7:
                    end = event_packets >= 5
                    payload = dtmf.event_payload(dtmf.DIGITS.index(digit), end, min(event_packets, 5) * 160)
                    self.sock.sendto(audio.rtp_packet(101, seq, event_ts, 0x1234, payload,
                                                      marker=event_packets == 1), self.remote)
                    seq = seq + 1
                event_packets += 1
                if event_packets > 12:
                    self.keyed.pop(0)
                    event_packets = 0
            else:
                t = (np.arange(160) + n * 160) / 8000
                pcm = (np.sin(2 * np.pi * self.tone * t) * 8000).astype(np.int16)
                self.sock.sendto(audio.rtp_packet(pt, seq, ts, 0x1234, audio.g711_encode(pcm, pt)), self.remote)
                seq = seq + 1
            ts, n = ts + 160, n + 1
            while True:
                try:
                    data = self.sock.recv(2048)
                except BlockingIOError:
                    break
                packet = audio.parse_rtp(data)
                if packet is not None:
                    self.received.append(audio.g711_decode(packet.payload, packet.pt))
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
            await loop.run_in_executor(None, lambda: None) if n % 500 == 0 else None

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sock.close()


def call_view(stack: SipStack, call_id: str) -> dict[str, Any]:
    """The gateway's view of one call (``/calls``), {} when it is not there."""
    return next((c for c in get_json(stack.sip_ports["http"], "/calls") if c["call_id"] == call_id), {})


L = TypeVar("L", bound=Listener)


@overload
async def in_room(stack: SipStack, nick: str, room: str, tone: float = ...) -> Listener: ...
@overload
async def in_room(stack: SipStack, nick: str, room: str, tone: float = ..., *, kind: type[L]) -> L: ...
async def in_room(stack: SipStack, nick: str, room: str, tone: float = ROOM_TONE,
                  kind: type[Listener] = Listener) -> Listener:
    """A participant ``nick`` sending ``tone``, joined to ``room``."""
    listener = kind(nick, port=stack.c2s_port, domain=DOMAIN, muc_domain=MUC_DOMAIN,
                    focus_jid=stack.focus_jid, tone=tone)
    await listener.start()
    await listener.join(f"{room}@{MUC_DOMAIN}")
    return listener


def plain_caller(stack: SipStack) -> tuple[RtpPhone, SipClient, str, str]:
    """A G.711 phone, a SIP client over UDP to the gateway, a new Call-ID and From tag."""
    return RtpPhone(CALLER_TONE), SipClient("udp", "127.0.0.1", stack.sip_ports["sip"]), \
        secrets.token_hex(8), secrets.token_hex(4)


async def hang_up(stack: SipStack, c: SipClient, ok: Any, call_id: str, tag: str, room: str) -> None:
    """The caller's BYE (in the dialog ``ok`` confirmed); the gateway's ``/calls`` forgets the call."""
    c.send(request("BYE", f"sip:{room}@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag, cseq=2,
                   to=ok.get("To")))
    assert await wait_until(lambda: not call_view(stack, call_id), 20)


def ack_for(ok: object, c: SipClient, call_id: str, from_tag: str, room: str, cseq: int = 1) -> None:
    c.send(request("ACK", f"sip:{room}@{DOMAIN}", host=c.local, call_id=call_id, from_tag=from_tag, cseq=cseq,
                   to=ok.get("To")))  # type: ignore[attr-defined]


async def test_plain_rtp_call_joins_the_room_and_audio_flows_both_ways(stack: SipStack) -> None:
    room = "siproom"
    listener = await in_room(stack, "bob", room)
    phone, c, call_id, tag = plain_caller(stack)
    try:
        ok = await place_call(c, phone, call_id, tag, room, "Carol Phone", logs=stack.logs)
        assert phone.payload_type == audio.PCMU
        # the caller is an occupant with its display name, and a participant of the conference
        assert await wait_until(lambda: "Carol Phone" in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 20), \
            stack.participants_of(f"{room}@{MUC_DOMAIN}")
        # both sides hear each other
        def heard_caller() -> bool:
            chunks = listener.pcm.get("Carol Phone", [])
            return hears(chunks, 48000, CALLER_TONE)

        def caller_heard_room() -> bool:
            chunks = phone.received
            return hears(chunks, 8000, ROOM_TONE)

        ok_both = await wait_until(lambda: heard_caller() and caller_heard_room(), 40)
        assert ok_both, (
            f"room heard caller: {heard_caller()} (frames {len(listener.pcm.get('Carol Phone', []))}), "
            f"caller heard room: {caller_heard_room()} (packets {len(phone.received)})\n{stack.logs()}")
        [call] = get_json(stack.sip_ports["http"], "/calls")
        assert call["room"] == room and call["media"] == "plain" and call["state"] == "confirmed"
        # BYE ends it and the occupant leaves
        c.send(request("BYE", f"sip:{room}@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag, cseq=2,
                       to=ok.get("To")))
        bye_ok = await asyncio.get_running_loop().run_in_executor(None, lambda: c.recv_final(10))
        assert bye_ok is not None and bye_ok.status == 200
        assert await wait_until(lambda: "Carol Phone" not in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 20)
        assert get_json(stack.sip_ports["http"], "/calls") == []
    finally:
        phone.stop()
        c.close()
        await listener.stop()


def peaks(pcm: np.ndarray, rate: int, near: list[float], within: float = 30.0) -> list[bool]:
    """Whether each of ``near`` stands out (10x the median level) in the spectrum of ``pcm``."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    floor = float(np.median(spectrum)) or 1.0
    return [float(spectrum[np.abs(freqs - f) < within].max()) > 10 * floor for f in near]


async def test_the_caller_hears_the_bridges_mix_minus_of_two_participants(stack: SipStack) -> None:
    """The gateway's leg logs in as its account and the focus gives it a mixer channel: the
    bridge's conference shows ``"rtp-level-relay-type": "mixer"`` for its endpoint, its offer has
    one audio source, and the phone hears both participants' tones (mixed by the bridge) while
    both of them hear the phone."""
    room = "mixroom"
    tones = {"bob": ROOM_TONE, "eve": 1400.0}
    listeners = {nick: await in_room(stack, nick, room, tone) for nick, tone in tones.items()}
    phone, c, call_id, tag = plain_caller(stack)
    try:
        ok = await place_call(c, phone, call_id, tag, room, "Grace Phone", logs=stack.logs)
        conf = stack.conference(f"{room}@{MUC_DOMAIN}")
        assert conf is not None
        flags = {p["endpoint"]: p["mixed_audio"] for p in conf["participants"]}
        assert flags == {"bob": False, "eve": False, "Grace Phone": True}, flags
        async with httpx.AsyncClient(timeout=5) as http:
            url = f"{stack.colibri_url(conf['bridge'])}/colibri/conferences/{conf['colibri_id']}"
            bridge = (await http.get(url)).json()
        relay = {ch.get("endpoint"): ch.get("rtp-level-relay-type")
                 for content in bridge["contents"] if content["name"] == "audio" for ch in content["channels"]}
        assert relay.get("Grace Phone") == "mixer" and relay.get("bob") != "mixer", relay

        def heard_caller(nick: str) -> bool:
            chunks = listeners[nick].pcm.get("Grace Phone", [])
            return hears(chunks, 48000, CALLER_TONE)

        def caller_heard_both() -> bool:
            chunks = phone.received
            return len(chunks) > 100 and all(peaks(np.concatenate(chunks[-50:]), 8000, list(tones.values())))

        assert await wait_until(lambda: caller_heard_both() and heard_caller("bob") and heard_caller("eve"), 40), (
            f"caller heard both: {caller_heard_both()} (packets {len(phone.received)}), room heard caller: "
            f"{heard_caller('bob')}, {heard_caller('eve')}\n{stack.logs()}")
        # mix-minus: the phone's own tone is not in what it hears
        assert not peaks(np.concatenate(phone.received[-50:]), 8000, [CALLER_TONE])[0]
        # the gateway decodes one stream: the bridge's mix (not one per participant)
        assert await wait_until(lambda: call_view(stack, call_id)["heard_frames"] > 100, 10), call_view(stack, call_id)
        await hang_up(stack, c, ok, call_id, tag, room)
    finally:
        phone.stop()
        c.close()
        for listener in listeners.values():
            await listener.stop()


async def test_moderator_mute_silences_the_sip_participant(stack: SipStack) -> None:
    """Jicofo's mute IQ from the room's moderator: the focus tells the gateway's leg (which shows
    ``audiomuted``) and the bridge, and nobody hears the caller, although its phone keeps sending."""
    room = "muteroom"
    moderator = await in_room(stack, "judy", room)
    phone, c, call_id, tag = plain_caller(stack)
    try:
        ok = await place_call(c, phone, call_id, tag, room, "Ivan Phone", logs=stack.logs)

        def heard() -> int:
            return len(moderator.pcm.get("Ivan Phone", []))

        assert await wait_until(lambda: heard() > 100 and abs(dominant_frequency(
            np.concatenate(moderator.pcm["Ivan Phone"][-50:]), 48000) - CALLER_TONE) < 30, 40), stack.logs()
        iq = moderator.make_iq_set(ito=stack.focus_jid)
        el = ET.Element("{http://jitsi.org/jitmeet/audio}mute", {"jid": f"{room}@{MUC_DOMAIN}/Ivan Phone"})
        el.text = "true"
        iq.append(el)
        await iq.send(timeout=15)
        assert await wait_until(lambda: call_view(stack, call_id)["muted"] is True, 15)
        await asyncio.sleep(1.5)  # what was in flight
        before, rtp_before = heard(), call_view(stack, call_id)["rtp_in"]
        await asyncio.sleep(3)
        after, rtp_after = heard(), call_view(stack, call_id)["rtp_in"]
        assert rtp_after > rtp_before + 50  # the phone still talks
        assert after == before, (before, after)  # nobody decodes it
        await hang_up(stack, c, ok, call_id, tag, room)
    finally:
        phone.stop()
        c.close()
        await moderator.stop()


def heard_since(phone: RtpPhone, start: int, frequency: float) -> bool:
    """The phone heard ``frequency`` (±30 Hz) in some 200 ms of what it got after chunk ``start``."""
    chunks = phone.received[start:]
    for i in range(0, max(0, len(chunks) - 10), 5):
        if abs(dominant_frequency(np.concatenate(chunks[i : i + 10]), 8000) - frequency) < 30:
            return True
    return False


async def place_call(
    c: SipClient, phone: RtpPhone, call_id: str, tag: str, user: str, display: str,
    within: float = 60, logs: Callable[[], str] = lambda: "",
) -> Any:
    """A plain-RTP INVITE from ``c`` to ``sip:<user>@<domain>``, answered 200 and ACKed; the phone
    starts its media towards the answer (the codec chosen: ``phone.payload_type``). Returns the 200."""
    c.send(request("INVITE", f"sip:{user}@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag,
                   display=display, to=f"<sip:{user}@{DOMAIN}>",
                   extra=[("Contact", f"<sip:caller@{c.local}>")], body=phone.offer()))
    ok = await asyncio.get_running_loop().run_in_executor(None, lambda: c.recv_final(within))
    assert ok is not None and ok.status == 200, f"{ok}\n{logs()}"
    ack_for(ok, c, call_id, tag, user)
    phone.start(ok.body)
    return ok


async def dial_in(c: SipClient, phone: RtpPhone, call_id: str, tag: str, display: str) -> Any:
    return await place_call(c, phone, call_id, tag, "dialin", display, within=30)


async def test_dial_in_number_takes_a_dtmf_pin_then_joins_its_room(stack: SipStack) -> None:
    room = "pinroom"
    listener = await in_room(stack, "dave", room)
    phone, c, call_id, tag = plain_caller(stack)
    try:
        # answered at once, before any room: the caller hears the prompt (two 440 Hz beeps)
        ok = await dial_in(c, phone, call_id, tag, "Erin Dialin")
        assert await wait_until(lambda: heard_since(phone, 0, 440.0), 20), stack.logs()
        call = call_view(stack, call_id)
        assert call["dial_in"] and call["pin_attempt"] == 1 and call["room"] == "dialin"
        # a wrong PIN: the retry prompt (330 Hz), second attempt
        mark = len(phone.received)
        phone.key("99#")
        assert await wait_until(lambda: heard_since(phone, mark, 330.0), 20), stack.logs()
        assert call_view(stack, call_id)["pin_attempt"] == 2
        assert "Erin Dialin" not in stack.participants_of(f"{room}@{MUC_DOMAIN}")
        # the right PIN joins the room it maps to; both sides hear each other
        phone.key("4321#")
        assert await wait_until(lambda: "Erin Dialin" in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 40), \
            stack.logs()

        def heard_caller() -> bool:
            chunks = listener.pcm.get("Erin Dialin", [])
            return hears(chunks, 48000, CALLER_TONE)

        def caller_heard_room() -> bool:
            chunks = phone.received
            return hears(chunks, 8000, ROOM_TONE)

        assert await wait_until(lambda: heard_caller() and caller_heard_room(), 40), \
            f"room heard caller: {heard_caller()}, caller heard room: {caller_heard_room()}\n{stack.logs()}"
        call = call_view(stack, call_id)
        assert call["room"] == room and call["dtmf_events"] == 8, call
        c.send(request("BYE", f"sip:dialin@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag, cseq=2,
                       to=ok.get("To")))  # type: ignore[attr-defined]
        bye_ok = await asyncio.get_running_loop().run_in_executor(None, lambda: c.recv_final(10))
        assert bye_ok is not None and bye_ok.status == 200
        assert await wait_until(lambda: "Erin Dialin" not in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 20)
    finally:
        phone.stop()
        c.close()
        await listener.stop()


async def test_dial_in_hangs_up_after_three_wrong_pins(stack: SipStack) -> None:
    phone, c, call_id, tag = plain_caller(stack)
    try:
        await dial_in(c, phone, call_id, tag, "Mallory")
        phone.key("1#2#" + "5" * 40 + "#")  # two wrong PINs and one far too long
        bye = await asyncio.get_running_loop().run_in_executor(None, lambda: c.recv(40))
        assert bye is not None and bye.method == "BYE", bye
        assert "3 times" in (bye.get("Reason") or ""), bye.get("Reason")
        assert await wait_until(lambda: not call_view(stack, call_id), 10)
    finally:
        phone.stop()
        c.close()


class ChatListener(Listener):
    """A participant that also keeps the room's groupchat messages: (nick, body)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)
        self.chat: list[tuple[str, str]] = []
        self.room_jid = ""
        self.register_handler(Callback("chat", MatchXPath("{jabber:client}message"), self._chat))  # type: ignore[arg-type]

    def _chat(self, stanza: slixmpp.Message) -> None:
        body = stanza.xml.find("{jabber:client}body")
        if stanza.xml.get("type") == "groupchat" and body is not None and body.text:
            self.chat.append((stanza["from"].resource, body.text))

    def say(self, text: str) -> None:
        self.make_message(mto=self.room_jid, mbody=text, mtype="groupchat").send()


MSRP_CLIENT_PATH = "msrp://df7jal23ls0d.invalid:2855/c1ientsess;ws"


def msrp_send(to_path: str, text: str, tid: str | None = None) -> bytes:
    tid = tid or secrets.token_hex(6)
    body = text.encode()
    return (f"MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {MSRP_CLIENT_PATH}\r\n"
            f"Message-ID: {secrets.token_hex(6)}\r\nByte-Range: 1-{len(body)}/{len(body)}\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + body + f"\r\n-------{tid}$\r\n".encode()


async def test_msrp_over_websocket_is_relayed_to_and_from_the_room_chat(stack: SipStack) -> None:
    room = "chatroom"
    listener = await in_room(stack, "frank", room, kind=ChatListener)
    listener.room_jid = f"{room}@{MUC_DOMAIN}"
    c = SipClient("ws", "127.0.0.1", stack.sip_ports["ws"])
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    offer = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 df7jal23ls0d.invalid\r\nt=0 0\r\n"
             "m=message 9 TCP/WS/MSRP *\r\na=accept-types:text/plain\r\n"
             f"a=path:{MSRP_CLIENT_PATH}\r\na=setup:active\r\n").encode()
    loop = asyncio.get_running_loop()
    try:
        c.send(request("INVITE", f"sip:{room}@{DOMAIN}", transport="WS", host=c.local, call_id=call_id,
                       from_tag=tag, display="Grace Chat", to=f"<sip:{room}@{DOMAIN}>",
                       extra=[("Contact", f"<sip:grace@{c.local};transport=ws>")], body=offer))
        ok = await loop.run_in_executor(None, lambda: c.recv_final(60))
        assert ok is not None and ok.status == 200, f"{ok}\n{stack.logs()}"
        c.send(request("ACK", f"sip:{room}@{DOMAIN}", transport="WS", host=c.local, call_id=call_id,
                       from_tag=tag, to=ok.get("To")))
        answer = ok.body.decode()
        assert "m=message" in answer and "TCP/WS/MSRP" in answer, answer
        gw_path = next(line[7:] for line in answer.splitlines() if line.startswith("a=path:"))
        assert await wait_until(lambda: "Grace Chat" in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 20)
        # room chat sent before the caller's MSRP socket is up waits for it
        listener.say("welcome grace")
        await asyncio.sleep(0.5)
        async with ws_connect(f"ws://127.0.0.1:{stack.sip_ports['ws']}/msrp-ws", subprotocols=["msrp"],  # type: ignore[list-item]
                              open_timeout=10) as ws:
            await ws.send(msrp_send(gw_path, "hello from msrp", tid="tid00001").decode())
            got: list[msrp.Frame] = []

            async def until(pred: Callable[[msrp.Frame], bool], within: float = 20) -> msrp.Frame:
                deadline = loop.time() + within
                while True:
                    for f in got:
                        if pred(f):
                            return f
                    raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - loop.time()))
                    got.append(msrp.parse_frame(raw.encode() if isinstance(raw, str) else raw))

            ok_frame = await until(lambda f: f.tid == "tid00001")
            assert ok_frame.status == 200 and ok_frame.get("To-Path") == MSRP_CLIENT_PATH
            assert await wait_until(lambda: ("Grace Chat", "hello from msrp") in listener.chat, 20), listener.chat
            welcome = await until(lambda f: f.method == "SEND" and b"welcome" in f.body)
            assert welcome.body == b"frank: welcome grace" and welcome.get("To-Path") == MSRP_CLIENT_PATH
            listener.say("and now live")
            live = await until(lambda f: f.method == "SEND" and b"live" in f.body)
            assert live.body == b"frank: and now live"
            # a flood is cut by the session's rate (burst 10): refused with 403, never reaches the room
            for i in range(30):
                await ws.send(msrp_send(gw_path, f"flood {i}", tid=f"flood{i:03d}").decode())
            await until(lambda f: f.tid == "flood029")
            statuses = [f.status for f in got if f.tid.startswith("flood")]
            assert statuses.count(403) >= 5 and len(statuses) == 30, statuses
            await asyncio.sleep(1)
            flooded = [b for n, b in listener.chat if n == "Grace Chat" and b.startswith("flood")]
            assert len(flooded) == statuses.count(200)
            call = call_view(stack, call_id)
            assert call["media"] == "msrp" and call["msrp_connected"] and call["muted"], call
            assert call["msrp_refused"] == statuses.count(403)
        c.send(request("BYE", f"sip:{room}@{DOMAIN}", transport="WS", host=c.local, call_id=call_id,
                       from_tag=tag, cseq=2, to=ok.get("To")))
        bye_ok = await loop.run_in_executor(None, lambda: c.recv_final(10))
        assert bye_ok is not None and bye_ok.status == 200
        assert await wait_until(lambda: "Grace Chat" not in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 20)
    finally:
        c.close()
        await listener.stop()


BARESIP = shutil.which("baresip")


def write_tone_wav(path: Path, frequency: float, seconds: float, rate: int = 8000) -> None:
    t = np.arange(int(rate * seconds)) / rate
    pcm = (np.sin(2 * np.pi * frequency * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def read_wav_pcm(path: Path) -> np.ndarray:
    """The samples of a 16-bit WAV that may still be open for writing (header sizes not final)."""
    data = path.read_bytes()
    start = data.find(b"data")
    return np.frombuffer(data[start + 8 : len(data) // 2 * 2 - (start % 2)], dtype="<i2") if start >= 0 else \
        np.zeros(0, np.int16)


@pytest.mark.peer
@pytest.mark.skipif(BARESIP is None, reason="needs Debian's baresip (baresip-core)")
async def test_baresip_calls_into_a_meeting_over_udp_with_g711(stack: SipStack, tmp_path: Path) -> None:
    """Debian's baresip, a real softphone: G.711 over UDP, its source a 1 kHz WAV (aufile), what it
    decodes saved by its sndfile module; the room hears the tone and baresip hears the room."""
    room = "bareroom"
    listener = await in_room(stack, "heidi", room)
    conf = tmp_path / "baresip"
    dumps = tmp_path / "dumps"
    conf.mkdir()
    dumps.mkdir()
    write_tone_wav(tmp_path / "tone.wav", CALLER_TONE, 120)
    sip_port = free_tcp_udp_port()
    (conf / "config").write_text("\n".join([
        "poll_method epoll", "net_interface 127.0.0.1", f"sip_listen 127.0.0.1:{sip_port}", f"audio_source aufile,{tmp_path / 'tone.wav'}",
        "audio_player aubridge,sink", "audio_alert aubridge,sink", "ausrc_srate 8000", "auplay_srate 8000",
        "rtp_tos 0", "module_path /usr/lib/baresip/modules", "module g711.so", "module aufile.so",
        "module aubridge.so", "module sndfile.so", "module_tmp uuid.so", "module_tmp account.so",
        "module_app menu.so", f"snd_path {dumps}", "",
    ]))
    gateway = f"127.0.0.1:{stack.sip_ports['sip']}"
    (conf / "accounts").write_text(
        f'"Bare Phone" <sip:barephone@{DOMAIN}>;regint=0;outbound="sip:{gateway};transport=udp";'
        "audio_codecs=PCMU\n")
    log = (tmp_path / "baresip.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        BARESIP or "baresip", "-f", str(conf), "-e", f"/dial sip:{room}@{DOMAIN}",
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert await wait_until(lambda: "Bare Phone" in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 60), \
            (tmp_path / "baresip.log").read_text()[-3000:] + stack.logs()

        def heard_caller() -> bool:
            chunks = listener.pcm.get("Bare Phone", [])
            return hears(chunks, 48000, CALLER_TONE)

        def decoded() -> np.ndarray:
            files = sorted(dumps.glob("*dec*.wav"))
            return read_wav_pcm(files[0]) if files else np.zeros(0, np.int16)

        def baresip_heard_room() -> bool:
            pcm = decoded()
            return len(pcm) > 16000 and abs(dominant_frequency(pcm[-8000:], 8000) - ROOM_TONE) < 30

        ok = await wait_until(lambda: heard_caller() and baresip_heard_room(), 60, interval=0.5)
        assert ok, (f"room heard baresip: {heard_caller()}, baresip heard room: {baresip_heard_room()} "
                    f"({len(decoded())} samples, {sorted(p.name for p in dumps.iterdir())})\n"
                    + (tmp_path / "baresip.log").read_text()[-3000:] + stack.logs())
        [call] = [c for c in get_json(stack.sip_ports["http"], "/calls") if c["display_name"] == "Bare Phone"]
        assert call["media"] == "plain" and call["room"] == room and call["state"] == "confirmed"
        assert call["display_name"] == "Bare Phone"
        # baresip hangs up when it stops (SIGTERM): its BYE ends the call and the occupant leaves
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        assert await wait_until(lambda: "Bare Phone" not in stack.participants_of(f"{room}@{MUC_DOMAIN}"), 30)
        assert await wait_until(lambda: not any(c["display_name"] == "Bare Phone" for c in get_json(stack.sip_ports["http"], "/calls")), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        await listener.stop()


@pytest.mark.parametrize("kind", ["udp", "tcp", "ws"])
def test_register_options_and_ws_admin(stack: SipStack, kind: str) -> None:
    port = stack.sip_ports["ws" if kind == "ws" else "sip"]
    c = SipClient(kind, "127.0.0.1", port)
    try:
        params = ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>";reg-id=1' if kind == "ws" else ""
        resp = c.register("alice", "alice-secret", contact_params=params)
        assert resp is not None and resp.status == 200, resp
        regs = get_json(stack.sip_ports["http"], "/registrations")
        assert any(r["aor"] == f"sip:alice@{DOMAIN}" and r["transport"] == kind for r in regs)
        c.send(request("OPTIONS", f"sip:{DOMAIN}", transport=c.via_transport, host=c.local))
        resp = c.recv_final()
        assert resp is not None and resp.status == 200 and "INVITE" in (resp.get("Allow") or "")
        if kind == "ws":
            assert resp.get("Via") and "WS" in resp.get("Via")  # type: ignore[operator]
            dump = get_json(stack.sip_ports["http"], "/admin/ws/dump")
            assert any("sub-protocol: sip" in str(conn) for conn in dump["connections"]), dump
    finally:
        c.close()
    if kind in ("tcp", "ws"):  # the binding dies with its connection (RFC 5626 flow)
        assert asyncio.run(wait_until(lambda: not any(
            r["transport"] == kind for r in get_json(stack.sip_ports["http"], "/registrations")), 10))


def test_cancel_while_joining(stack: SipStack) -> None:
    c = SipClient("udp", "127.0.0.1", stack.sip_ports["sip"])
    phone = RtpPhone(CALLER_TONE)
    try:
        call_id, tag, branch = secrets.token_hex(8), secrets.token_hex(4), "z9hG4bK" + secrets.token_hex(6)
        invite = request("INVITE", f"sip:cancelroom@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag,
                         branch=branch, to=f"<sip:cancelroom@{DOMAIN}>",
                         extra=[("Contact", f"<sip:carol@{c.local}>")], body=phone.offer())
        c.send(invite)
        trying = c.recv(10)
        assert trying is not None and trying.status == 100
        c.send(request("CANCEL", f"sip:cancelroom@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag,
                       branch=branch, to=f"<sip:cancelroom@{DOMAIN}>"))
        got = sorted((m.status, m.cseq[1]) for m in (c.recv_final(10), c.recv_final(10)) if m is not None)
        assert got == [(200, "CANCEL"), (487, "INVITE")]
    finally:
        phone.stop()
        c.close()


SIPP = shutil.which("sipp")
SIPP_SCENARIO = Path(__file__).with_name("sipp") / "uac_room.xml"


def run_sipp(port: int, calls: int, rooms: int, rate: float, work: Path, hold: float,
             timeout: float = 300, echo: bool = False) -> subprocess.CompletedProcess[str]:
    """SIPp (Debian's sip-tester) placing ``calls`` G.711 calls, all at once at most, into
    ``rooms`` rooms of the gateway on 127.0.0.1:``port``; ``echo`` sends back the RTP it gets."""
    inject = work / "rooms.csv"
    inject.write_text("SEQUENTIAL\n" + "".join(f"sipp{i % rooms};\n" for i in range(calls)))
    argv = [SIPP or "sipp", f"127.0.0.1:{port}", "-sf", str(SIPP_SCENARIO), "-inf", str(inject),
            "-i", "127.0.0.1", "-p", str(free_tcp_udp_port()), "-mi", "127.0.0.1", "-mp", str(free_tcp_udp_port()),
            "-m", str(calls), "-l", str(calls), "-r", str(rate), "-d", str(int(hold * 1000)),
            "-timeout", f"{int(timeout)}s",
            "-timeout_error", "-recv_timeout", "60000", "-nostdin", "-trace_stat", "-trace_err",
            "-stf", str(work / "stat.csv"), "-error_file", str(work / "errors.log")]
    if echo:
        argv.append("-rtp_echo")
    return subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout + 60)


@pytest.mark.peer
@pytest.mark.skipif(SIPP is None, reason="needs Debian's sip-tester (sipp)")
def test_sipp_50_concurrent_calls_answered_and_torn_down(stack: SipStack, tmp_path: Path) -> None:
    before = get_json(stack.sip_ports["http"], "/calls")
    assert before == []
    # 2 calls/s held 40 s: all 50 are up at once for 15 s (a loaded 2-core machine joins slowly)
    result = run_sipp(stack.sip_ports["sip"], calls=50, rooms=10, rate=2, hold=40, work=tmp_path)
    errors = (tmp_path / "errors.log").read_text()[-3000:] if (tmp_path / "errors.log").exists() else ""
    assert result.returncode == 0, f"sipp rc={result.returncode}\n{result.stdout[-3000:]}\n{errors}\n{stack.logs()}"
    stats = (tmp_path / "stat.csv").read_text().splitlines()
    header, last = stats[0].split(";"), stats[-1].split(";")
    row = dict(zip(header, last, strict=False))
    assert row["SuccessfulCall(C)"] == "50" and row["FailedCall(C)"] == "0", row
    # every call left its meeting and the gateway holds nothing
    assert asyncio.run(wait_until(lambda: get_json(stack.sip_ports["http"], "/calls") == [], 30))
