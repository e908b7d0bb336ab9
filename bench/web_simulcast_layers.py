"""What simulcast and the layout-driven ReceiverVideoConstraints save, measured in Chromium.

Starts the stack with the launcher (one bridge) and three pages (Ada, Bob, Cy) sending a 720p fake
camera as three simulcast layers. Ada shows Bob large and Cy as a thumbnail; Bob shows Cy large.
After ``--warmup`` seconds, samples for ``--seconds`` and prints, from the pages' own getStats:

* what Cy sends per layer (frame height, kbps);
* what Ada receives of Cy (thumbnail) and what Bob receives of Cy (stage): frame height, kbps.

Numbers only; it never fails on them (the machine's load moves them).

    .venv/bin/python bench/web_simulcast_layers.py --seconds 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.browser import DESKTOP, LauncherStack, browsers


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    args = parser.parse_args()
    stack = LauncherStack(Path(tempfile.mkdtemp(prefix="parley-bench-")) / "run", bridges=1).start()
    try:
        with browsers() as pool:
            room = f"bench-{uuid.uuid4().hex[:8]}"
            pages = {}
            for name in ("Ada", "Bob", "Cy"):
                page = pool.open(DESKTOP)
                page.goto(f"{stack.front}/{room}?name={name}")
                pages[name] = page
            for page in pages.values():
                page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
                page.wait_for_function(
                    "async () => Object.keys(await window.parley.videoStats()).length === 2", timeout=45_000
                )
            ep = {name: str(page.evaluate("window.parley.endpointId")) for name, page in pages.items()}
            pages["Ada"].evaluate(f"window.parley.pin({ep['Bob']!r})")
            pages["Bob"].evaluate(f"window.parley.pin({ep['Cy']!r})")
            time.sleep(args.warmup)

            def snapshot() -> dict[str, object]:
                return {
                    "ada": pages["Ada"].evaluate("window.parley.videoStats()")[ep["Cy"]],
                    "bob": pages["Bob"].evaluate("window.parley.videoStats()")[ep["Cy"]],
                    "cy": {s["ssrc"]: s for s in pages["Cy"].evaluate("window.parley.sendStats()")},
                }

            first, start = snapshot(), time.monotonic()
            time.sleep(args.seconds)
            last, elapsed = snapshot(), time.monotonic() - start

            def kbps(a: dict, b: dict, key: str) -> float:
                return (b[key] - a[key]) * 8 / elapsed / 1000

            print(f"Cy sends ({elapsed:.0f} s):")
            for ssrc, layer in sorted(last["cy"].items(), key=lambda kv: kv[1]["frameHeight"]):  # type: ignore[union-attr]
                before = first["cy"].get(ssrc, {"bytesSent": 0})  # type: ignore[union-attr]
                print(
                    f"  layer {layer['frameHeight']:>4} lines  {kbps(before, layer, 'bytesSent'):7.0f} kbps  active={layer['active']}"
                )
            for who, where in (("ada", "thumbnail"), ("bob", "stage")):
                a, b = first[who], last[who]
                print(
                    f"{who.title()} receives Cy ({where}): {b['frameHeight']:>4} lines  {kbps(a, b, 'bytesReceived'):7.0f} kbps"
                )  # type: ignore[index]
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
