"""Join latency through the focus: conference IQ sent -> Jingle session-initiate received.

Starts the real broker, two bridges and the focus (``tests/integration/test_focus_stack.py``), then
joins ``--rooms`` x ``--per-room`` participants one after another (each: conference IQ, MUC join
with Jitsi presence, session-initiate, SDP answer, session-accept) and prints p50/p95/max of the
join latency, plus the focus's own Colibri allocation latency from its ``/metrics``.

    .venv/bin/python bench/focus_join.py [--rooms 10] [--per-room 5]

Participants answer without sending media (``media=False``) so the figure is the signalling path;
each join starts once the previous participant's session-accept was processed, so joins do not
overlap.
Prints numbers; never fails on timing.
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def allocation_quantiles(metrics: str) -> str:
    count = total = 0.0
    for line in metrics.splitlines():
        if line.startswith("jicofo_allocation_seconds_count"):
            count = float(line.split()[-1])
        elif line.startswith("jicofo_allocation_seconds_sum"):
            total = float(line.split()[-1])
    return f"{count:.0f} allocations, mean {1000 * total / count:.1f} ms" if count else "no allocations"


async def run(rooms: int, per_room: int, bridges: int) -> None:
    with Stack(bridges=bridges) as stack:
        people: list[JingleParticipant] = []
        latencies: list[float] = []
        try:
            for r in range(rooms):
                room = f"bench{r}@{MUC_DOMAIN}"
                for i in range(per_room):
                    p = stack.participant(f"r{r}p{i}", media=False)
                    await p.start()
                    await p.join(room)
                    if not await wait_until(lambda p=p: bool(p.log_.initiated_at), 10, interval=0.002):
                        raise RuntimeError(f"{p.nick} got no session-initiate\n{stack.logs()}")
                    assert p.conference_iq_at is not None
                    latencies.append(p.log_.initiated_at[0] - p.conference_iq_at)
                    people.append(p)
                    # let this session settle (answer, PATCH, source-add) so joins do not overlap
                    if not await wait_until(
                        lambda p=p, room=room: stack.participants_of(room).get(p.nick) == "active", 10
                    ):
                        raise RuntimeError(f"{p.nick}'s session-accept was not processed\n{stack.logs()}")
            placement = {c["room"]: c["bridge"] for c in stack.get("/conferences")}
            metrics = await asyncio.to_thread(
                lambda: __import__("httpx").get(stack.focus_url + "/metrics").text
            )
        finally:
            await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)
    ms = [1000 * v for v in latencies]
    spread = {b: list(placement.values()).count(b) for b in sorted(set(placement.values()), key=str)}
    print(f"focus join latency (conference IQ -> session-initiate), {len(ms)} participants in {rooms} rooms:")
    print(f"  p50 {percentile(ms, 0.5):.1f} ms   p95 {percentile(ms, 0.95):.1f} ms   "
          f"max {max(ms):.1f} ms   mean {statistics.fmean(ms):.1f} ms")  # fmt: skip
    print(f"  first joiner of a room (creates room + Colibri conference): "
          f"p50 {percentile(ms[::per_room], 0.5):.1f} ms")  # fmt: skip
    print(f"  Colibri allocation inside the focus: {allocation_quantiles(metrics)}")
    print(f"  rooms per bridge: {spread}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--per-room", type=int, default=5)
    parser.add_argument("--bridges", type=int, default=2)
    args = parser.parse_args()
    reason = bridge_missing()
    if reason:
        print(f"cannot run: {reason}")
        return
    started = time.perf_counter()
    asyncio.run(run(args.rooms, args.per_room, args.bridges))
    print(f"  (bench wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
