"""NACK/retransmission behaviour of the bridge with six real aiortc participants (VP8 + Opus).

    .venv/bin/python -m bench.nack_storm [--seconds 40] [--no-nack] [--loss 0.01 --burst 20]
        [--keep-audio] [--video 160x120@15]

The setup of ``tests/integration/test_bridge_intelligence.py``: one media engine process with
the conference intelligence policy, six aiortc peers in this process (96x72 video at 10 fps,
quiet audio), Colibri ``last-n`` 2 on every video channel, bob then eve talking. Every
``--interval`` seconds it prints, summed over the endpoints, the bridge's NACK counters
(received from receivers, sent to senders), retransmissions sent, retransmission requests the
storm protection left unanswered (suppressed duplicates, too old, dropped over budget, never
forwarded to that receiver), PLIs, and the video frames each receiver decoded
from the two sources it is forwarded, and the worst event-loop lag in this process (the
participants' side) over the interval and the bridge process's CPU use. ``--no-nack`` strips ``a=rtcp-fb:<pt> nack`` from the
answers (receivers then never NACK) for comparison. ``--loss P --burst N`` makes the
participants lose datagrams the way a starved process does: each RTP/RTCP datagram arriving at
a participant starts, with probability P, a run of N dropped datagrams (dropped right after the
socket, before SRTP). ``--keep-audio`` keeps the audio receivers running (more CPU in this
process, so more real loss). Never fails on numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import aioice.ice
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.media_client import (  # noqa: E402
    BridgeParticipant,
    ColourTrack,
    ToneTrack,
    allow_loopback_ice,
)
from tests.integration.test_bridge_intelligence import (  # noqa: E402
    COLOURS,
    LOUD,
    NAMES,
    QUIET,
    TONES,
    start_bridge,
)

COUNTERS = (
    "nacks_received",
    "nacks_sent",
    "retransmissions",
    "retransmissions_suppressed",
    "retransmissions_too_old",
    "retransmissions_dropped",
    "retransmissions_not_forwarded",
    "plis_forwarded",
)
HEADINGS = ("nacks in", "nacks up", "resent", "suppressed", "too old", "dropped", "not fwd", "plis")


class NoNackParticipant(BridgeParticipant):
    def _answer(self, others: list[BridgeParticipant], via: tuple[str, int] | None) -> str:
        lines = super()._answer(others, via).split("\r\n")
        return "\r\n".join(line for line in lines if not re.fullmatch(r"a=rtcp-fb:\d+ nack", line))


def inject_loss(probability: float, burst: int) -> None:
    """Drop runs of ``burst`` RTP/RTCP datagrams at every participant's socket (STUN passes)."""
    original = aioice.ice.StunProtocol.datagram_received
    dropping: dict[int, int] = {}

    def datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
        if data and 128 <= data[0] <= 191:
            left = dropping.get(id(self), 0)
            if left == 0 and random.random() < probability:
                left = burst
            if left > 0:
                dropping[id(self)] = left - 1
                return
        original(self, data, addr)

    aioice.ice.StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]


class LoopLag:
    """The largest delay of a 50 ms timer on this process's event loop since the last read."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.05)
            self.worst = max(self.worst, time.monotonic() - start - 0.05)

    def read(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst

    def stop(self) -> None:
        self._task.cancel()


def loud(person: BridgeParticipant, amplitude: float) -> None:
    person.pc.getTransceivers()[0].sender.replaceTrack(ToneTrack(person.tone, amplitude))


async def run(
    seconds: float,
    interval: float,
    nack: bool,
    keep_audio: bool,
    video: tuple[int, int, int],
    no_audio: bool = False,
) -> None:
    allow_loopback_ice()
    gen = start_bridge()
    bridge = next(gen)
    url = bridge.control_url  # type: ignore[attr-defined]
    print(f"bridge log: {bridge.log_path}")
    kind = BridgeParticipant if nack else NoNackParticipant
    people = [kind(n, COLOURS[n], TONES[n], url) for n in NAMES]
    try:
        for p in people:
            await p.prepare(slots=len(people) - 1)
            loud(p, QUIET)
            p.pc.getTransceivers()[1].sender.replaceTrack(ColourTrack(p.rgb, *video))
        async with httpx.AsyncClient() as http:
            for p in people:
                await p.register()
                (await http.put(f"{p.endpoint_url}/last-n", json={"lastN": 2})).raise_for_status()
        for p in people:
            await p.connect([o for o in people if o is not p])
        deadline = time.monotonic() + 30
        while not all(p.pc.connectionState == "connected" for p in people):
            assert time.monotonic() < deadline, "participants did not connect"
            await asyncio.sleep(0.2)
        if not keep_audio:
            for p in people:
                for transceiver in p.pc.getTransceivers()[2::2]:
                    await transceiver.receiver.stop()
        if no_audio:
            async with httpx.AsyncClient() as http:
                for p in people:
                    message = {"colibriClass": "ReceiverAudioSubscription", "include": []}
                    (await http.post(f"{p.endpoint_url}/messages", json=message)).raise_for_status()
        by_name = {p.name: p for p in people}
        lag = LoopLag()
        loud(by_name["bob"], LOUD)
        started = time.monotonic()
        eve_started = False
        print(f"nack={'on' if nack else 'off'}")
        print(
            "t(s)  "
            + " ".join(f"{c:>10}" for c in HEADINGS)
            + " loop lag bridge cpu"
            + "   decoded frames per receiver (sum of slots)"
        )
        cpu = None
        async with httpx.AsyncClient() as http:
            while time.monotonic() - started < seconds:
                await asyncio.sleep(interval)
                elapsed = time.monotonic() - started
                if not eve_started and elapsed > seconds / 3:
                    loud(by_name["bob"], QUIET)
                    loud(by_name["eve"], LOUD)
                    eve_started = True
                stats: dict[str, Any] = (await http.get(f"{url}/stats")).json()
                totals = {c: sum(d.get(c, 0) for d in stats["endpoint_details"]) for c in COUNTERS}
                now_cpu = (stats["monotonic"], stats["cpu_seconds"])
                busy = 0.0 if cpu is None else (now_cpu[1] - cpu[1]) / (now_cpu[0] - cpu[0])
                cpu = now_cpu
                frames = {p.name: sum(m.video_frames for m in p.received.values()) for p in people}
                print(
                    f"{elapsed:5.1f} "
                    + " ".join(f"{totals[c]:>10}" for c in COUNTERS)
                    + f" {lag.read():>8.2f} {busy:>8.0%}   "
                    + " ".join(f"{n}={f}" for n, f in frames.items()),
                    flush=True,
                )
        rtts = {d["endpoint_id"]: d.get("rtt_ms") for d in stats["endpoint_details"]}
        print("round trip to each endpoint (ms): " + " ".join(f"{e}={r}" for e, r in rtts.items()))
        lag.stop()
        print("per receiver, decoded video frames per slot owner:")
        for p in people:
            print(
                f"  {p.name}: "
                + ", ".join(f"{p.slot_owner[s]}={m.video_frames}" for s, m in sorted(p.received.items()))
            )
    finally:
        for p in people:
            await p.close()
        gen.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--interval", type=float, default=2)
    parser.add_argument("--no-nack", action="store_true")
    parser.add_argument("--keep-audio", action="store_true")
    parser.add_argument("--no-audio", action="store_true", help="receivers subscribe to no audio")
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--video", default="96x72@10", help="WIDTHxHEIGHT@FPS")
    args = parser.parse_args()
    size, fps = args.video.split("@")
    width, height = size.split("x")
    if args.loss:
        random.seed(1)
        inject_loss(args.loss, args.burst)
    asyncio.run(
        run(
            args.seconds,
            args.interval,
            not args.no_nack,
            args.keep_audio,
            (int(width), int(height), int(fps)),
            args.no_audio,
        )
    )


if __name__ == "__main__":
    main()
