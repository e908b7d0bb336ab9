"""Several datagrams per event-loop wake-up while recording.

The recorder receives each participant's RTP on its ICE connection's UDP socket. uvloop (libuv)
already reads every datagram waiting on a readable socket, up to 32, per turn of the loop
(``uv__udp_recvmsg``), and aioice hands them on one by one; but media arrives spread out (a
few hundred packets a second over one to a few sockets), so the loop sleeps in ``epoll_wait``
between nearly every two datagrams and each one costs a wake-up of the thread: a kernel round
trip, a turn of the loop, a GIL hand-over with the composer's thread.

A recorder needs no reaction within milliseconds: its composed output is
``recorder.composite.latency`` (0.6 s) behind real time, and nothing it receives is played. So
while a recording runs, :class:`TurnPacer` makes each turn of the loop last at least
:data:`PERIOD`: a callback that runs once per turn sleeps out the rest of the period (the GIL
released), then the loop looks at its sockets without blocking and finds what arrived
meanwhile, several datagrams per wake-up. Timers and every other callback are late by up to
one period; the socket's receive buffer holds a period of media many times over. When a turn
handled :data:`BUSY` datagrams or more (libuv's 32 a socket a turn come near), the next turn
does not wait, so the pacing never limits how fast the loop can read. With no recording the
pacer is stopped and the loop blocks as usual; on asyncio's own loop, which reads one datagram
per readable socket a turn, it never runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

PERIOD = 0.005
"""Seconds a turn of the event loop lasts at least while recording."""
BUSY = 24
"""Datagrams in one turn from which the next turn does not wait (libuv reads at most 32 a
socket a turn)."""


def pause(now: float, turn_started: float, datagrams: int, period: float = PERIOD, busy: int = BUSY) -> float:
    """Seconds to sleep at ``now`` for a turn that started at ``turn_started`` and received
    ``datagrams`` (no I/O)."""
    if datagrams >= busy:
        return 0.0
    return max(0.0, min(period, turn_started + period - now))


def drains_sockets(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` reads every datagram waiting on a readable socket in one turn: uvloop's
    does (up to 32); asyncio's own reads one per socket per turn, which pacing would turn into a
    cap of one datagram per socket per period."""
    return type(loop).__module__.split(".")[0] == "uvloop"


class TurnPacer:
    """Paces the running event loop while :meth:`run` was last called with True."""

    def __init__(
        self,
        datagrams: Callable[[], int],
        period: float = PERIOD,
        busy: int = BUSY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.datagrams = datagrams  # a count of datagrams received so far (any origin)
        self.period, self.busy = period, busy
        self.clock, self.sleep = clock, sleep
        self._handle: asyncio.Handle | None = None
        self._turn_started = 0.0
        self._seen = 0
        self.turns = 0
        self.slept = 0.0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def run(self, active: bool) -> None:
        """Start (on the running loop, if it is uvloop's) or stop pacing."""
        if active and self._handle is None:
            if not drains_sockets(asyncio.get_running_loop()):
                return
            self._turn_started = self.clock()
            self._seen = self.datagrams()
            self._handle = asyncio.get_running_loop().call_soon(self._turn)
        elif not active and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _turn(self) -> None:
        count = self.datagrams()
        rest = pause(self.clock(), self._turn_started, count - self._seen, self.period, self.busy)
        if rest > 0:
            self.sleep(rest)
            self.slept += rest
        self.turns += 1
        self._turn_started = self.clock()
        self._seen = self.datagrams()
        self._handle = asyncio.get_running_loop().call_soon(self._turn)
