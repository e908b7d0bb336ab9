"""The event loop's pacing while recording: how long a turn waits, and that it runs on a real
loop only while asked to."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest
import uvloop

from services.recorder.pacing import BUSY, PERIOD, TurnPacer, pause


def test_a_quiet_turn_waits_out_the_rest_of_its_period() -> None:
    assert pause(10.0, 10.0, 0) == pytest.approx(PERIOD)
    assert pause(10.002, 10.0, 3, period=0.005) == pytest.approx(0.003)
    assert pause(10.009, 10.0, 3, period=0.005) == 0.0  # the turn took longer than the period
    assert pause(9.0, 10.0, 0, period=0.005) == pytest.approx(0.005)  # never more than a period


def test_a_busy_turn_does_not_wait() -> None:
    assert pause(10.0, 10.0, BUSY) == 0.0
    assert pause(10.0, 10.0, BUSY - 1) > 0


def test_datagrams_sent_during_a_pause_are_read_in_one_turn_and_pacing_stops() -> None:
    """On uvloop with a real UDP socket: datagrams sent while the loop sleeps are all read in
    the next turn; after run(False) no turn is paced any more."""

    async def scenario() -> tuple[list[int], int, int]:
        loop = asyncio.get_running_loop()
        received: list[int] = []
        per_turn: list[int] = []

        class Sink(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                received.append(int(data))

        transport, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pacer = TurnPacer(lambda: len(received), period=0.02)

        def sleep(seconds: float) -> None:  # what arrives while the loop sleeps waits in the socket
            for i in range(5):
                sender.sendto(str(len(received) * 10 + i).encode(), ("127.0.0.1", port))
            per_turn.append(len(received))
            time.sleep(seconds)

        pacer.sleep = sleep
        pacer.run(True)
        assert pacer.running
        await asyncio.sleep(0.2)
        pacer.run(False)
        turns = pacer.turns
        await asyncio.sleep(0.05)
        sender.close()
        transport.close()
        counts = [b - a for a, b in itertools.pairwise(per_turn)]
        return counts, turns, pacer.turns

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # the recorder's loop
        counts, turns, after = runner.run(scenario())
    assert 3 <= turns <= 12  # 0.2 s in turns of at least 0.02 s
    assert after == turns  # stopped
    assert counts and all(c == 5 for c in counts[1:]), counts  # five datagrams read per turn


def test_only_a_loop_that_drains_its_sockets_is_paced() -> None:
    """asyncio's own loop reads one datagram per readable socket a turn: pacing it would cap
    what a socket can receive, so it is left alone."""

    async def scenario() -> bool:
        pacer = TurnPacer(lambda: 0)
        pacer.run(True)
        running = pacer.running
        pacer.run(False)
        return running

    assert asyncio.run(scenario()) is False
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) is True
