"""Join-to-first-remote-frame time in the browser, through the whole stack.

Starts the stack with the launcher (one bridge), keeps ``--hosts`` Chromium pages in a room
sending their fake camera, then has a newcomer join ``--runs`` times (a fresh room each time) and
reads the page's own timings (``window.parley.timings``, milliseconds from the join click):

* ``joinedMs``: XMPP login, focus conference request and MUC join done;
* ``mediaConnectedMs``: ICE/DTLS with the bridge connected;
* ``firstRemoteFrameMs``: the first remote video frame painted (requestVideoFrameCallback).

Prints one line per run and the medians. Numbers only; it never fails on timing.

    .venv/bin/python bench/web_join_to_first_frame.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.browser import DESKTOP, LauncherStack, browsers

KEYS = ("joinedMs", "mediaConnectedMs", "firstRemoteFrameMs")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=1, help="people already in the room")
    args = parser.parse_args()
    stack = LauncherStack(Path(tempfile.mkdtemp(prefix="parley-bench-")) / "run", bridges=1).start()
    results: list[dict[str, float]] = []
    try:
        with browsers() as pool:
            pages = [pool.open(DESKTOP) for _ in range(args.hosts + 1)]
            hosts, newcomer = pages[:-1], pages[-1]
            for run in range(args.runs):
                room = f"bench-{uuid.uuid4().hex[:8]}"
                for i, page in enumerate(hosts):
                    page.goto(f"{stack.front}/{room}?name=Host{i}")
                    page.wait_for_selector("#meeting:not([hidden])", timeout=20_000)
                time.sleep(1.0)  # the hosts' media is flowing before the newcomer arrives
                newcomer.goto(f"{stack.front}/{room}?name=Newcomer")
                newcomer.wait_for_function(
                    "() => window.parley.timings.firstRemoteFrameMs !== undefined", timeout=30_000
                )
                timings = newcomer.evaluate("window.parley.timings")
                results.append({k: float(timings.get(k, float("nan"))) for k in KEYS})
                print(f"run {run + 1}: " + "  ".join(f"{k}={results[-1][k]:.0f}" for k in KEYS), flush=True)
                for page in pages:
                    page.goto("about:blank")
    finally:
        stack.stop()
    print(f"median over {len(results)} runs ({args.hosts} host(s) sending, 1 bridge, loopback):")
    for k in KEYS:
        print(f"  {k:>20}: {statistics.median(r[k] for r in results):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
