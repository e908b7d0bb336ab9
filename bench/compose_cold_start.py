"""Compose cold start and bridge failover, as a user sees them in Chromium.

1. ``docker compose up -d`` with the images already built (they are built first, not timed here
   but printed) to the first remote video frame decoded by a browser in a two-party meeting
   joined through the nginx container as soon as the front door answers;
2. ``kill`` of the bridge container carrying a three-party meeting (scaled to two bridges, the
   killed one started again before the next round) to every page decoding every remote video
   again, ``--kills`` times.

Runs on podman's Docker API with Debian's docker-compose, like ``tests/compose/`` (root needed;
free ports of its own; the project is taken down at the end):

    sudo .venv/bin/python -m bench.compose_cold_start [--kills 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.compose.conftest import (
    BRIDGE_SLOTS,
    edit_env_file,
    free_block,
    project_files,
    stack_env,
)
from tests.compose.engine import ComposeProject, PodmanService, ensure_debian_base
from tests.compose.test_stack import frames, open_page
from tests.integration.browser import browsers


def first_frame(pages: list, timeout: float = 180) -> float:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if any(any(v > 0 for v in frames(p).values()) for p in pages):
                return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError("no remote frame decoded")


def all_flowing(pages: list, remotes: int, since: dict[int, dict[str, int]]) -> bool:  # type: ignore[type-arg]
    """Every page decodes ``remotes`` videos, each past what it had decoded at ``since``."""
    for i, page in enumerate(pages):
        now = frames(page)
        if len(now) < remotes or not all(now[ep] > since.get(i, {}).get(ep, 0) for ep in now):
            return False
    return True


def recovered(pages: list, remotes: int, t_kill: float, timeout: float) -> list[float | None]:  # type: ignore[type-arg]
    """When each page decodes ``remotes`` videos again after a kill: the first time every one of
    its remote videos decoded new frames between two samples both taken at least a second after
    the kill (a move gives the page a new peer connection whose counters start again from zero, so
    counts are compared sample to sample, never with those before the kill)."""
    back: list[float | None] = [None] * len(pages)
    previous: list[tuple[float, dict[str, int]] | None] = [None] * len(pages)
    while time.monotonic() - t_kill < timeout and any(t is None for t in back):
        for i, page in enumerate(pages):
            if back[i] is not None:
                continue
            with contextlib.suppress(Exception):
                now = frames(page)
                at = time.monotonic()
                prev = previous[i]
                if prev is not None and prev[0] >= t_kill + 1.0 and len(now) >= remotes:
                    if all(ep in prev[1] and n > prev[1][ep] for ep, n in now.items()):
                        back[i] = at
                previous[i] = (at, now)
        time.sleep(0.3)
    return back


def scale_bridges(project: ComposeProject, focus: str, count: int, timeout: float = 300) -> None:
    """``count`` bridge replicas running (a killed one started again), all operational in the focus."""
    project.compose("up", "-d", "--no-recreate", "--scale", f"bridge={count}", timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            listed = httpx.get(f"{focus}/bridges", timeout=5).json()
            if sum(1 for b in listed if b.get("state", "operational") == "operational") >= count:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} operational bridges:\n{project.logs(30)}")
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=3, help="bridge kills to time (default 3)")
    parser.add_argument(
        "--trace", action="store_true", help="after each kill, print the pages' console and the focus's log"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-compose-"))
    ensure_debian_base(workdir)
    engine = PodmanService(workdir).start()
    project_dir = workdir / "parley"
    project_files(project_dir)
    (project_dir / ".env.example").replace(project_dir / ".env")
    env = stack_env(free_block(7 + 3 * BRIDGE_SLOTS))
    edit_env_file(project_dir / ".env", env)
    project = ComposeProject(engine, project_dir, f"parleybench{os.getpid()}")
    front = f"https://localhost:{env['HTTPS_PORT']}"
    focus = f"http://127.0.0.1:{env['JICOFO_HTTP_PORT']}"
    try:
        started = time.monotonic()
        project.compose("build", timeout=3600)
        print(f"images built in {time.monotonic() - started:.1f} s (layer cache as it was)")
        project.start_healthchecks(interval=1.0)
        t0 = time.monotonic()
        project.compose("up", "-d", timeout=900)
        t_up = time.monotonic() - t0
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(front + "/nginx-health", verify=False, timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        t_door = time.monotonic() - t0
        nginx = project.container_names("nginx")[0]
        cert = workdir / "cert.pem"
        cert.write_text(project.podman("exec", nginx, "cat", "/var/lib/parley-tls/cert.pem"))
        room = f"bench-{uuid.uuid4().hex[:8]}"
        with browsers() as pool:
            pages = []
            console: list[tuple[float, int, str]] = []

            def traced(page):  # type: ignore[no-untyped-def]
                index = len(pages)
                page.on("console", lambda msg: console.append((time.monotonic(), index, msg.text)))
                return page

            for name in ("Ada", "Bob"):
                page = traced(open_page(pool, cert))
                page.goto(f"{front}/{room}?name={name}")
                pages.append(page)
            t_frame = first_frame(pages) - t0
            print(
                f"cold start: `up -d` returned after {t_up:.1f} s, front door answered at {t_door:.1f} s, "
                f"first remote frame at {t_frame:.1f} s"
            )
            scale_bridges(project, focus, 2)
            third = traced(open_page(pool, cert))
            third.goto(f"{front}/{room}?name=Cy")
            pages.append(third)
            deadline = time.monotonic() + 120
            while not all_flowing(pages, 2, {}):
                assert time.monotonic() < deadline, "the three-party meeting never flowed"
                time.sleep(0.3)
            recoveries = []
            for kill in range(args.kills):
                scale_bridges(project, focus, 2)
                confs = httpx.get(f"{focus}/conferences", timeout=5).json()
                carrying = next(c for c in confs if str(c["room"]).startswith(room))["bridge"]
                ids = {}
                for name in project.container_names("bridge"):
                    state = project.podman("exec", name, "cat", "/tmp/parley-bridge.json")
                    ids[json.loads(state)["server_id"]] = name
                t_kill = time.monotonic()
                project.podman("kill", "--signal", "KILL", ids[carrying])
                back = recovered(pages, 2, t_kill, timeout=120)
                if args.trace:
                    print(f"kill at {time.strftime('%H:%M:%S', time.gmtime(time.time() - (time.monotonic() - t_kill)))} UTC")
                    for at, index, text in console:
                        if at >= t_kill - 1:
                            print(f"  +{at - t_kill:6.2f} s page {index}: {text[:200]}")
                    print(project.compose("logs", "--no-color", "--tail=30", "focus", timeout=60))
                per_page = ", ".join("-" if t is None else f"{t - t_kill:.1f}" for t in back)
                if any(t is None for t in back):
                    print(f"kill {kill + 1}: bridge {carrying} killed, media NOT flowing on every page after "
                          f"120 s (pages back after s: {per_page})")  # fmt: skip
                    continue
                recoveries.append(max(back) - t_kill)  # type: ignore[type-var,operator]
                print(
                    f"kill {kill + 1}: bridge {carrying} killed, media flowing again after {recoveries[-1]:.2f} s "
                    f"(each page: {per_page} s)"
                )
            if recoveries:
                print(
                    f"bridge kill to media flowing again: p50 {statistics.median(recoveries):.2f} s, "
                    f"max {max(recoveries):.2f} s over {len(recoveries)} kills"
                )
    finally:
        project.down()
        project.remove_images()
        engine.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
