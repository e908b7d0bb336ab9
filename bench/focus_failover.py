"""Failover time: a bridge is SIGKILLed -> media flows again between the conference's participants.

Starts the real broker, two bridges and the focus; two aiortc participants (Opus + VP8) join a
room; once each decodes the other, the bridge hosting the room is killed and the time until both
decode each other again (through the other bridge, after session-terminate "moving" and a new
session-initiate) is measured. The killed bridge is restarted on the same ports and the next
round uses a fresh room. Prints p50/max over ``--kills`` rounds; never fails on timing.

    .venv/bin/python bench/focus_failover.py [--kills 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.test_focus_stack import MUC_DOMAIN, Stack, bridge_missing


def hears(p: JingleParticipant, other: str) -> bool:
    return min(p.frames_from(other)) >= 3


async def one_round(stack: Stack, n: int) -> tuple[float, float, str]:
    room = f"failover{n}@{MUC_DOMAIN}"
    a = stack.participant(f"a{n}", rgb=(220, 30, 30), tone=330)
    b = stack.participant(f"b{n}", rgb=(30, 220, 30), tone=550)
    try:
        for p in (a, b):
            await p.start()
            await p.join(room)
        if not await wait_until(lambda: hears(a, b.nick) and hears(b, a.nick), 25):
            raise RuntimeError(f"round {n}: no media before the kill\n{stack.logs()}")
        victim = stack.bridge_of(room)
        assert victim is not None
        killed = time.perf_counter()
        stack.bridges[victim].kill()
        if not await wait_until(
            lambda: len(a.log_.initiated_at) == 2 and len(b.log_.initiated_at) == 2, 15, 0.005
        ):
            raise RuntimeError(f"round {n}: not re-invited\n{stack.logs()}")
        reinvited = max(a.log_.initiated_at[1], b.log_.initiated_at[1]) - killed
        if not await wait_until(lambda: hears(a, b.nick) and hears(b, a.nick), 20, 0.01):
            raise RuntimeError(f"round {n}: media did not resume\n{stack.logs()}")
        resumed = max(a.received[b.nick].first_at or 0, b.received[a.nick].first_at or 0) - killed
        return reinvited, resumed, victim
    finally:
        await asyncio.gather(a.stop(), b.stop(), return_exceptions=True)


async def run(kills: int) -> None:
    with Stack(bridges=2) as stack:
        rounds = []
        for n in range(kills):
            reinvited, resumed, victim = await one_round(stack, n)
            rounds.append((reinvited, resumed))
            print(
                f"  kill {n + 1}: {victim} killed -> re-invited {reinvited:.2f} s, media again {resumed:.2f} s"
            )
            stack.start_bridge(victim)
            stack.wait_bridges(set(stack.bridges))
    reinvites = [r[0] for r in rounds]
    resumes = [r[1] for r in rounds]
    print(f"failover over {kills} kills: media again p50 {statistics.median(resumes):.2f} s, "
          f"max {max(resumes):.2f} s; re-invite p50 {statistics.median(reinvites):.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    reason = bridge_missing()
    if reason:
        print(f"cannot run: {reason}")
        return
    asyncio.run(run(args.kills))


if __name__ == "__main__":
    main()
