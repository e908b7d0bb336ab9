"""The recorder benchmarks' meeting: N aiortc participants, one process each.

Each participant (``tests/integration/participant.py`` :class:`JingleParticipant`: real XMPP,
Jingle and WebRTC) runs in its own process (``multiprocessing``, spawn context) with its own
event loop, so that no participant's ICE consent freshness checks (RFC 7675: aioice sends one
STUN request about every 5 s, waits 0.5 s, and closes the connection after 6 misses) starve
behind the others' encoders on one lagging loop. Each sends a colour pattern (VP8, 15 fps) and
a tone (Opus).

The processes run at niceness :data:`NICE`: they stand in for other machines, and on a machine
with few cores ten busy participant processes would otherwise take the CPU from the bridge and
the recorder being measured (the recorder's composer then falls behind and skips pictures).

Only one participant (``p1``) reads what it receives; the others drop the RTP datagrams they
receive unread (see :func:`_drop_received_rtp`), so each of them costs its encoder, not the
decryption and decoding of nine streams. The meeting is ready when ``p1`` has decoded ``p0``'s
video and audio and every other participant has received more than 100 RTP datagrams.

The benchmark talks to the participants over a pipe (join, state, Jibri IQ from ``p0``, stop);
:meth:`Meeting.stop` stops them and terminates (then kills) any that do not exit. A participant
whose pipe closes (the benchmark died) stops on its own.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import time
import xml.etree.ElementTree as ET
from multiprocessing.process import BaseProcess

COLOURS = [(220, 30, 30), (30, 200, 30), (40, 60, 230), (200, 200, 30), (200, 30, 200), (30, 200, 200),
           (240, 140, 20), (120, 120, 120), (250, 250, 250), (90, 40, 10)]  # fmt: skip
DOMAIN = "meet.jitsi"
NICE = 10  # the participants' processes' niceness (see _participant)
DECODER = 1  # the participant that decodes (p0's frames); the others drop the RTP they receive


# ------------------------------------------------------------------------------ participant side
_dropped = [0]  # RTP datagrams received and dropped unread (the participants that do not decode)


def _drop_received_rtp() -> None:
    """Make this process's peer connections drop every RTP datagram they receive before SRTP
    decryption (aioice's ``Connection.recv``, which aiortc's ICE transport reads from). STUN,
    DTLS (and the data channel over it) and RTCP (RFC 5761 section 4: second byte 192-223) pass;
    RTP (first byte 128-191, RFC 7983 section 7) is counted and dropped, so the participant costs
    its encoder, not the decryption, jitter buffers and decoders of nine streams."""
    import aioice

    original = aioice.Connection.recv

    async def recv(self: aioice.Connection) -> bytes:
        while True:
            data = await original(self)
            if len(data) >= 2 and 127 < data[0] < 192 and not 192 <= data[1] <= 223:
                _dropped[0] += 1
                continue
            return data

    aioice.Connection.recv = recv  # type: ignore[method-assign]


def _participant(c2s: int, index: int, decode: bool, conn: multiprocessing.connection.Connection) -> None:
    """A participant process's entry point."""
    from tests.integration.participant import allow_loopback_ice

    allow_loopback_ice()
    # the participants stand in for other machines: when the two cores are short, the services
    # being measured (bridge, recorder) and the browser go first
    os.nice(NICE)
    if not decode:
        _drop_received_rtp()
    try:
        asyncio.run(_serve(c2s, index, conn))
    except KeyboardInterrupt:
        pass


async def _serve(c2s: int, index: int, conn: multiprocessing.connection.Connection) -> None:
    from services.common import jibri, xmpp_names
    from tests.integration.participant import JingleParticipant

    muc = xmpp_names.muc_domain(DOMAIN)
    p = JingleParticipant(f"p{index}", port=c2s, domain=DOMAIN, muc_domain=muc, focus_jid=xmpp_names.focus_component(DOMAIN),
                          rgb=COLOURS[index % len(COLOURS)], tone=300.0 + 70 * index)  # fmt: skip
    started = False
    try:
        while True:
            try:
                command, arg = await asyncio.to_thread(conn.recv)
            except (EOFError, OSError):
                return  # the benchmark is gone
            try:
                if command == "join":
                    await p.start()
                    started = True
                    await p.join(f"{arg}@{muc}")
                    reply: object = None
                elif command == "state":
                    reply = {
                        "nick": p.nick,
                        "ice": p.pc.iceConnectionState if p.pc is not None else "none",
                        "from_p0": p.frames_from("p0"),
                        "dropped": _dropped[0],
                    }
                elif command == "jibri":
                    iq = p.make_iq_set(ito=f"{p.room}/focus")
                    iq.append(ET.fromstring(arg))
                    result = await iq.send(timeout=30)
                    el = jibri.find_jibri(result.xml)
                    reply = ET.tostring(el, encoding="unicode") if el is not None else None
                elif command == "stop":
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError(f"unknown command {command!r}")
                conn.send(("ok", reply))
            except Exception as exc:  # reported to the benchmark, which decides
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        if started:
            await asyncio.wait_for(p.stop(), 10)


# ------------------------------------------------------------------------------ benchmark side
class Meeting:
    """``n`` participants ``p0`` .. ``p{n-1}`` in ``room``, one process each (see the module)."""

    def __init__(self, c2s: int, room: str, n: int) -> None:
        self.c2s, self.room, self.n = c2s, room, n
        self.nicks = [f"p{i}" for i in range(n)]
        self._processes: list[BaseProcess] = []
        self._conns: list[multiprocessing.connection.Connection] = []

    def start(self, within: float = 90.0) -> Meeting:
        """Starts the processes, joins them in order (``p0`` first: the room's moderator, who may
        ask for a recording) and waits until the media flows (see the module); raises if it does
        not within ``within`` seconds (after stopping the processes)."""
        ctx = multiprocessing.get_context("spawn")
        try:
            for i in range(self.n):
                ours, theirs = ctx.Pipe()
                process = ctx.Process(target=_participant, args=(self.c2s, i, i == DECODER, theirs),
                                      name=f"participant-p{i}", daemon=True)  # fmt: skip
                process.start()
                theirs.close()
                self._processes.append(process)
                self._conns.append(ours)
            for i in range(self.n):
                self.call(i, "join", self.room, timeout=60)
            deadline = time.monotonic() + within
            while not self.ready():
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the meeting's media did not flow within {within:.0f} s: {self.states()}"
                    )
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def call(self, i: int, command: str, arg: object = None, timeout: float = 40.0) -> object:
        conn = self._conns[i]
        conn.send((command, arg))
        if not conn.poll(timeout):
            raise TimeoutError(f"p{i} did not answer {command!r} within {timeout:.0f} s")
        status, reply = conn.recv()
        if status != "ok":
            raise RuntimeError(f"p{i} {command}: {reply}")
        return reply

    def states(self) -> list[dict[str, object]]:
        return [self.call(i, "state") for i in range(self.n)]  # type: ignore[misc]

    def ready(self) -> bool:
        states = self.states()
        if self.n < 2:
            return True
        video, audio = states[DECODER]["from_p0"]  # type: ignore[misc]
        return bool(video > 3 and audio > 3) and all(  # type: ignore[has-type]
            s["dropped"] > 100  # type: ignore[operator]
            for i, s in enumerate(states)
            if i != DECODER
        )

    def lost(self) -> list[str]:
        """The participants whose peer connection closed or failed (or whose process died)."""
        gone = []
        for i, nick in enumerate(self.nicks):
            try:
                state = self.call(i, "state", timeout=10)
            except (OSError, EOFError, TimeoutError, RuntimeError):
                gone.append(nick)
                continue
            if state["ice"] in ("closed", "failed", "none"):  # type: ignore[index]
                gone.append(nick)
        return gone

    async def jibri_iq(self, request_xml: str) -> str | None:
        """Sends a ``<jibri/>`` IQ from ``p0`` to the focus's occupant JID; its answer's ``<jibri/>``."""
        answer = await asyncio.to_thread(self.call, 0, "jibri", request_xml, 40.0)
        return str(answer) if answer is not None else None

    def stop(self) -> None:
        """Stops every participant; terminates, then kills, any that does not exit."""
        for i, process in enumerate(self._processes):
            try:
                if process.is_alive():
                    self.call(i, "stop", timeout=15)
            except (OSError, EOFError, TimeoutError, RuntimeError):
                pass
        for process in self._processes:
            process.join(15)
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        for conn in self._conns:
            conn.close()
        self._processes, self._conns = [], []
