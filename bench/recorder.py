"""Recording cost: Parley's recorder against recording the way Jibri does, side by side.

Starts the whole stack with the launcher (one bridge, the recorder), puts ``--sizes`` aiortc
participants in a room (each sending a colour pattern at 15 fps and a tone; one process each,
``bench/meeting.py``), then, for each size:

* **parley file**: a file recording (per-participant WebM remuxed + the composed MKV) started
  with Jibri's IQ through the focus; the recorder process's CPU and memory are sampled for
  ``--window`` seconds while it records;
* **parley stream**: the composed output only, pushed over RTMP to a local Debian nginx with
  libnginx-mod-rtmp (per-track cost = file minus stream);
* **browser (Jibri's way)**: Chromium, not headless, in an Xvfb X server, joins the room through
  the web client as a participant without camera or microphone, and ffmpeg captures the screen
  with Jibri's settings (x11grab, 30 fps, libx264 veryfast, CRF 25); Chromium's processes, Xvfb
  and ffmpeg are sampled the same way. (Jibri also captures the audio through an ALSA loopback;
  that part is left out, so the browser figure is, if anything, low.)

The composed output is rendered at ``--size`` (default 1280x720) and ``--fps`` (default 30), as
Jibri records, so the two produce the same picture. CPU is the share of one core
(``utime + stime`` from ``/proc``), memory the resident set at the end of the window minus the
process's before the recording (for the recorder) or the whole resident set (browser tree).
Numbers only; it never fails on timing. The machine's load average is printed with each line.

    .venv/bin/python bench/recorder.py --sizes 3 --window 20
    .venv/bin/python bench/recorder.py --sizes 10 --window 20

``--keep DIR`` copies the recordings (per-participant WebM, composed MKV) to ``DIR``, e.g. for
``bench/recorder_ratecontrol.py``.

One size per run: with several sizes in one run, the second meeting was recorded with no media
in two runs on the loaded machine, when all the participants still ran on event loops of this
process; not diagnosed, and not tried again since they run in their own processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.meeting import Meeting
from services.common import jibri
from tests.integration.browser import LauncherStack, browsers
from tests.integration.participant import wait_until
from tests.integration.test_recorder import RtmpServer

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------- /proc
def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents[int(entry.name)] = st[0]
    out, frontier = set(roots), list(roots)
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in out:
                out.add(child)
                frontier.append(child)
    return sorted(out)


def find(pattern: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pattern in cmd:
                pids.append(int(entry.name))
    return pids


@dataclass
class Sample:
    cpu: float  # cores
    rss: int  # bytes at the end
    fps: float = 0.0  # composed frames written per second (parley runs)


def cpu_seconds(pids: list[int]) -> float:
    return sum((_stat(p) or (0, 0.0))[1] for p in pids)


async def measure(pids_of: callable, window: float) -> Sample:  # type: ignore[valid-type]
    pids = pids_of()
    start, t0 = cpu_seconds(pids), time.monotonic()
    await asyncio.sleep(window)
    pids = pids_of()
    return Sample((cpu_seconds(pids) - start) / (time.monotonic() - t0), sum(_rss(p) for p in pids))


def measure_sync(pids_of: callable, window: float) -> Sample:  # type: ignore[valid-type]
    pids = pids_of()
    start, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(window)
    pids = pids_of()
    return Sample((cpu_seconds(pids) - start) / (time.monotonic() - t0), sum(_rss(p) for p in pids))


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


# ---------------------------------------------------------------------------------------- meeting
def arrived(start: dict[str, int], end: dict[str, int]) -> list[str]:
    """Participants whose RTP packets reached the recorder between two ``/recordings`` views
    (``rtp_packets_by_participant``)."""
    return sorted(p for p, n in end.items() if n > start.get(p, 0))


def complete(n: int, start: dict[str, int], end: dict[str, int]) -> bool:
    """Print how many of the ``n`` participants' media reached the recorder; False (no
    per-packet figure is printed then: it would be understated) when fewer than all did."""
    got = arrived(start, end)
    print(
        f"   media of {len(got)} of {n} participants reached the recorder: {', '.join(got) or '-'}",
        flush=True,
    )
    if len(got) < n:
        print(f"   fewer than all {n} participants' media arrived: no per-packet figure", flush=True)
    return len(got) >= n


def lost(people: Meeting) -> str:
    """The participants whose peer connection closed, e.g. aioice's consent freshness check
    (RFC 7675: one STUN request every ~5 s, no retransmission, 0.5 s to answer, closed after
    6 misses in a row) failing when a participant's event loop lags behind on a loaded machine."""
    gone = people.lost()
    return f"   participants whose connection closed: {', '.join(gone)}" if gone else ""


async def jibri_iq(people: Meeting, request: jibri.JibriIq) -> jibri.JibriIq:
    """A Jibri IQ from ``p0`` (the room's moderator) to the focus; the answer's ``<jibri/>``."""
    answer = await people.jibri_iq(ET.tostring(request.to_element(), encoding="unicode"))
    return jibri.JibriIq.from_element(ET.fromstring(answer)) if answer is not None else jibri.JibriIq()


async def parley_run(people: Meeting, recorder_pids: callable, window: float,  # type: ignore[valid-type]
                     mode: jibri.RecordingMode, stream: str | None, recorder_url: str, n: int) -> Sample:  # fmt: skip
    def frames(session_id: str | None, field: str = "composed_frames") -> int:
        try:
            views = httpx.get(f"{recorder_url}/recordings", timeout=5).json()
        except httpx.HTTPError:
            return -1
        return next((int(v.get(field, -1)) for v in views if v["session_id"] == session_id), -1)

    def by_participant(session_id: str | None) -> dict[str, int]:
        try:
            views = httpx.get(f"{recorder_url}/recordings", timeout=5).json()
        except httpx.HTTPError:
            return {}
        view = next((v for v in views if v["session_id"] == session_id), {})
        return {str(k): int(c) for k, c in view.get("rtp_packets_by_participant", {}).items()}

    before = sum(_rss(x) for x in recorder_pids())
    answer = await jibri_iq(
        people, jibri.JibriIq(action=jibri.Action.START, recording_mode=mode, stream_id=stream)
    )
    print(f"   {mode.value} recording {answer.session_id}: {answer.status.value}", flush=True)
    if not await wait_until(lambda: frames(answer.session_id) > 30, 30):
        print("   the composed output did not start within 30 s", flush=True)
    start_frames = frames(answer.session_id)
    start_pictures = frames(answer.session_id, "composed_pictures")
    start_packets = frames(answer.session_id, "rtp_packets")
    start_by = by_participant(answer.session_id)
    sample = await measure(recorder_pids, window)
    written = frames(answer.session_id) - start_frames
    pictures = frames(answer.session_id, "composed_pictures") - start_pictures
    packets = frames(answer.session_id, "rtp_packets") - start_packets
    whole = complete(n, start_by, by_participant(answer.session_id))
    print(f"   composed output: {written / window:.1f} frames/s over the window, "
          f"{pictures / window:.1f} pictures/s encoded", flush=True)  # fmt: skip
    if packets > 0 and whole:  # the recorder's CPU (all its threads) per RTP packet received
        print(f"   received {packets / window:.0f} RTP packets/s; recorder CPU "
              f"{sample.cpu * window / packets * 1e6:.0f} us per packet", flush=True)  # fmt: skip
    await jibri_iq(people, jibri.JibriIq(action=jibri.Action.STOP, session_id=answer.session_id))
    await asyncio.sleep(2)
    return Sample(sample.cpu, sample.rss - before, written / window)


def browser_run(front: str, room: str, window: float, width: int, height: int, fps: int, out: Path) -> Sample:
    display = f":{90 + os.getpid() % 9}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.0)
    os.environ["DISPLAY"] = display
    ffmpeg = None
    try:
        with browsers() as pool:
            from tests.integration import browser as b

            profile = Path(tempfile.mkdtemp(prefix="parley-jibri-"))
            context = pool.playwright.chromium.launch_persistent_context(
                str(profile), executable_path=b.CHROMIUM, headless=False,
                args=[f for f in b.CHROMIUM_FLAGS if f != b.FAKE_DEVICES and not f.startswith("--headless")] + ["--kiosk", f"--window-size={width},{height}"],
                viewport={"width": width, "height": height}, ignore_default_args=["--mute-audio"],
            )  # fmt: skip
            pool.contexts.append(context)
            pool.profiles.append(profile)
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{front}/{room}?name=Recorder")
            page.wait_for_selector("#meeting:not([hidden])", timeout=60_000)
            time.sleep(4)
            ffmpeg = subprocess.Popen(
                ["ffmpeg", "-v", "error", "-y", "-f", "x11grab", "-draw_mouse", "0", "-framerate", str(fps),
                 "-video_size", f"{width}x{height}", "-i", display, "-c:v", "libx264", "-preset", "veryfast",
                 "-profile:v", "main", "-pix_fmt", "yuv420p", "-crf", "25", "-g", str(2 * fps),
                 "-tune", "zerolatency", str(out)],
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            browser_pids = find(str(profile))

            def pids() -> list[int]:
                return tree([*browser_pids, xvfb.pid, ffmpeg.pid])  # type: ignore[union-attr]

            time.sleep(2)
            sample = measure_sync(pids, window)
            ffmpeg.terminate()
            ffmpeg.wait(20)
            page.goto("about:blank")
            return sample
    finally:
        if ffmpeg is not None and ffmpeg.poll() is None:
            ffmpeg.kill()
        xvfb.terminate()
        xvfb.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--keep", type=Path, help="copy the recordings (per-participant WebM, composed MKV) here"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if not args.no_browser and shutil.which("Xvfb") is None:
        parser.error("Xvfb is missing (apt-get install xvfb), or pass --no-browser")
    os.environ.update(RECORDER_COMPOSITE_WIDTH=str(width), RECORDER_COMPOSITE_HEIGHT=str(height),
                      RECORDER_COMPOSITE_FPS=str(args.fps),
                      RECORDER_RTMP_ALLOWED_NETWORKS="127.0.0.1/32")  # the local nginx-rtmp  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="parley-bench-rec-"))
    stack = LauncherStack(work / "run", bridges=1).start()
    offset = int(stack.front.rsplit(":", 1)[1]) - 8000
    c2s = 5222 + offset
    run_dir = str(work / "run" / "recordings")
    recorder_url = f"http://127.0.0.1:{8300 + offset}"

    def recorder_pids() -> list[int]:
        return tree(
            [
                p
                for p in find("services.recorder")
                if run_dir in Path(f"/proc/{p}/environ").read_bytes().decode(errors="replace")
            ]
        )

    results = []
    try:
        with RtmpServer() as rtmp:
            for n in args.sizes:
                room = f"bench-{uuid.uuid4().hex[:6]}"
                people = Meeting(c2s, room, n).start()
                try:

                    async def parley(
                        people: Meeting = people, n: int = n, room: str = room
                    ) -> tuple[Sample, Sample]:
                        file = await parley_run(people, recorder_pids, args.window, jibri.RecordingMode.FILE, None,
                                                recorder_url, n)  # fmt: skip
                        if gone := lost(people):
                            print(gone, flush=True)
                        stream = await parley_run(people, recorder_pids, args.window, jibri.RecordingMode.STREAM,
                                                  rtmp.url(room), recorder_url, n)  # fmt: skip
                        return file, stream

                    file, stream = asyncio.run(parley())
                    print(f"{n:2d} participants  parley file (tracks+composed): cpu {file.cpu * 100:5.1f} %  mem +{file.rss / 2**20:5.1f} MB"
                          f"   (load {load()})", flush=True)  # fmt: skip
                    print(f"{n:2d} participants  parley stream (composed only):  cpu {stream.cpu * 100:5.1f} %  mem +{stream.rss / 2**20:5.1f} MB"
                          f"   (load {load()})", flush=True)  # fmt: skip
                    browser = None
                    if not args.no_browser:
                        # the participants' processes keep their media flowing meanwhile
                        browser = browser_run(
                            stack.front, room, args.window, width, height, args.fps, work / f"jibri-{n}.mp4"
                        )
                        print(f"{n:2d} participants  browser + ffmpeg (Jibri's way):  cpu {browser.cpu * 100:5.1f} %  mem  {browser.rss / 2**20:5.1f} MB"
                              f"   (load {load()})", flush=True)  # fmt: skip
                finally:
                    people.stop()
                results.append((n, file, stream, browser))
    finally:
        stack.stop()
        if args.keep is not None and Path(run_dir).is_dir():
            shutil.copytree(run_dir, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    # A starved recorder (a loaded machine) writes fewer frames than --fps and so spends less:
    # the frame rate it kept is printed next to its CPU.
    print(
        "\nparticipants | parley file cpu / mem / fps | parley composed cpu / mem / fps | browser+ffmpeg cpu / mem | composed / browser cpu"
    )
    for n, file, stream, browser in results:
        ratio = f"{stream.cpu / browser.cpu * 100:.0f} %" if browser and browser.cpu > 0 else "-"
        b = f"{browser.cpu * 100:.1f} % / {browser.rss / 2**20:.0f} MB" if browser else "-"
        print(
            f"{n} | {file.cpu * 100:.1f} % / +{file.rss / 2**20:.0f} MB / {file.fps:.1f} | "
            f"{stream.cpu * 100:.1f} % / +{stream.rss / 2**20:.0f} MB / {stream.fps:.1f} | {b} | {ratio}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
