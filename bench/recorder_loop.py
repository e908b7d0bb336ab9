"""The recorder's event-loop cost per received RTP packet, without a browser.

Starts the stack with the launcher (one bridge, the recorder), puts ``--participants`` aiortc
participants in a room (colour pattern at 15 fps and a tone each, one process each, as
``bench/recorder.py``: ``bench/meeting.py``),
starts a file recording with Jibri's IQ through the focus, waits for the composed output, then
for ``--window`` seconds reads from ``/proc`` the CPU seconds (``utime + stime``) of the
recorder's event-loop thread (its main thread) and of the whole process, and from the
recorder's ``/recordings`` view the RTP packets it received, and prints CPU per packet. It also
prints whose media reached the recorder in the window (``rtp_packets_by_participant``) and prints
no per-packet figure when fewer than all ``--participants`` did: the figure would be understated.

With ``--perf FILE`` it also runs ``perf record -g`` on the event-loop thread for the window
(read it with ``perf report -i FILE --no-children --sort dso,sym``); with ``--py-spy FILE``,
``py-spy record --native --nonblocking -f raw`` on the process (collapsed stacks, one per line). Numbers only; it never
fails on timing. Run it under the benchmark lock:

    flock -x /work/bench.lock .venv/bin/python bench/recorder_loop.py --participants 10 --window 20
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.meeting import Meeting
from bench.recorder import TICK, complete, find, jibri_iq, load, lost
from services.common import jibri
from tests.integration.browser import LauncherStack
from tests.integration.participant import wait_until


def thread_cpu(pid: int, tid: int) -> float:
    text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def switches(pid: int, tid: int) -> int:
    """Context switches of a thread so far (voluntary: it slept, e.g. in epoll_wait; involuntary)."""
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
    return sum(int(line.split()[1]) for line in status if "ctxt_switches:" in line)


def process_cpu(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--perf", help="also perf record -g the event-loop thread into this file")
    parser.add_argument("--py-spy", help="also py-spy record (raw, --nonblocking) the process into this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="parley-bench-recloop-"))
    stack = LauncherStack(work / "run", bridges=1).start()
    offset = int(stack.front.rsplit(":", 1)[1]) - 8000
    c2s = 5222 + offset
    run_dir = str(work / "run" / "recordings")
    recorder_url = f"http://127.0.0.1:{8300 + offset}"
    recorder = next(
        p
        for p in find("services.recorder")
        if run_dir in Path(f"/proc/{p}/environ").read_bytes().decode(errors="replace")
    )

    def view(session_id: str | None) -> dict[str, object]:
        try:
            views = httpx.get(f"{recorder_url}/recordings", timeout=5).json()
        except httpx.HTTPError:
            return {}
        return next((v for v in views if v["session_id"] == session_id), {})

    async def run(people: Meeting) -> None:
        answer = await jibri_iq(
            people, jibri.JibriIq(action=jibri.Action.START, recording_mode=jibri.RecordingMode.FILE)
        )
        print(f"file recording {answer.session_id}: {answer.status.value}", flush=True)
        if not await wait_until(lambda: int(view(answer.session_id).get("composed_frames", -1)) > 30, 30):  # type: ignore[call-overload]
            print("the composed output did not start within 30 s", flush=True)
        perf = None
        if args.perf:
            perf = subprocess.Popen(  # noqa: ASYNC220 (a benchmark, started once)
                [
                    "perf",
                    "record",
                    "-q",
                    "-g",
                    "-t",
                    str(recorder),
                    "-o",
                    args.perf,
                    "--",
                    "sleep",
                    str(args.window),
                ],
                stdout=subprocess.DEVNULL,
            )
        elif args.py_spy:
            perf = subprocess.Popen(  # noqa: ASYNC220 (a benchmark, started once)
                [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "--native", "--nonblocking", "-r", "100", "-f", "raw", "-d", str(int(args.window)),
                 "-p", str(recorder), "-o", args.py_spy],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        start_view = view(answer.session_id)
        sw0 = switches(recorder, recorder)
        peers0 = sum(process_cpu(pid) for pid in people.pids)
        loop0, proc0, t0 = thread_cpu(recorder, recorder), process_cpu(recorder), time.monotonic()
        await asyncio.sleep(args.window)
        loop1, proc1, t1 = thread_cpu(recorder, recorder), process_cpu(recorder), time.monotonic()
        peers1 = sum(process_cpu(pid) for pid in people.pids)
        sw1 = switches(recorder, recorder)
        end_view = view(answer.session_id)
        if perf is not None:
            await asyncio.to_thread(perf.wait, 60)
        packets = int(end_view.get("rtp_packets", 0)) - int(start_view.get("rtp_packets", 0))  # type: ignore[call-overload]
        elapsed = t1 - t0
        print(f"{args.participants} participants, {elapsed:.1f} s: {packets / elapsed:.0f} RTP packets/s received "
              f"(load {load()})", flush=True)  # fmt: skip
        pictures = int(end_view.get("composed_pictures", 0)) - int(start_view.get("composed_pictures", 0))  # type: ignore[call-overload]
        print(f"   composed pictures encoded: {pictures / elapsed:.1f}/s", flush=True)
        print(f"   the participants' {len(people.pids)} processes (not measured): {(peers1 - peers0) / elapsed * 100:.0f} % of a core",
              flush=True)  # fmt: skip
        whole = complete(
            args.participants,
            dict(start_view.get("rtp_packets_by_participant", {})),  # type: ignore[call-overload]
            dict(end_view.get("rtp_packets_by_participant", {})),  # type: ignore[call-overload]
        )
        if gone := lost(people):
            print(gone, flush=True)
        if packets > 0 and whole:
            print(f"event-loop thread: {(loop1 - loop0) / elapsed * 100:.1f} % of a core, "
                  f"{(loop1 - loop0) / packets * 1e6:.0f} us per packet, "
                  f"{(sw1 - sw0) / packets:.2f} context switches per packet", flush=True)  # fmt: skip
            print(f"whole process:     {(proc1 - proc0) / elapsed * 100:.1f} % of a core, "
                  f"{(proc1 - proc0) / packets * 1e6:.0f} us per packet", flush=True)  # fmt: skip
        await jibri_iq(people, jibri.JibriIq(action=jibri.Action.STOP, session_id=answer.session_id))

    try:
        people = Meeting(c2s, f"bench-{uuid.uuid4().hex[:6]}", args.participants).start()
        try:
            asyncio.run(run(people))
        finally:
            people.stop()
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
