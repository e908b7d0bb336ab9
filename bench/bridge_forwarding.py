"""Forwarding cost of Parley's bridge against Janus (VideoRoom), driven by the same clients.

    .venv/bin/python -m bench.bridge_forwarding [--window 8] [--only fanout5,meeting10]
        [--parley bridge|engine|both] [--parley-loop c|python|both] [--no-janus] [--idle 4]
        [--instructions]
    .venv/bin/python -m bench.bridge_forwarding --no-janus --only meeting20 [--meeting20-fps 15]
        [--meeting20-ptime 20]

Scenarios: one publisher at 1 Mbps (VP8, pre-encoded) to 5, 10, 20 and 40 subscribers, and a
10-party meeting where everyone sends Opus-sized audio (50 pps) and VP8 video (~400 kbps) and
receives everyone else. For each scenario Parley runs, then Janus, alternating, each in its own
room/conference while the other SFU idles.

``meeting20`` (the bridge as deployed only: Janus cannot do last-N): 20 participants, each sending
Opus-sized audio with the RFC 6464 level (three of them talking in turn, so the dominant speaker
moves) and VP8 simulcast in three SSRC-signalled layers (180p, 360p, 720p; a key frame every 2 s
and on every PLI or FIR), in three variants: ``meeting20-lastn`` (Colibri ``last-n`` 5 on every
video channel, every receiver in stage view over the Colibri WebSocket: the dominant speaker on
stage at 720p, thumbnails at 180p, re-sent when the dominant speaker changes),
``meeting20-all`` (``last-n`` -1, no constraints: every sender's top layer to everyone) and
``meeting20-layers`` (the layers without a SIM group, so each is an independent stream and every
layer goes to everyone). Packets are counted by the abs-send-time extension the senders stamp on
every packet, read from the clear-text RTP header (receivers do not decrypt), so the client's own
delay does not move them in or out of the window; the bytes are what the bridge sent (RTP, RTCP,
STUN) and what forwarding would need by the policy (``expected``), from what the senders sent.

What runs as Parley: by default the bridge as deployed (``python -m services.bridge``), set up
through Colibri REST like the focus does it, so the conference-intelligence policy, the HTTP and
WebSocket servers and the timers are all in the figure; ``--parley engine`` measures the media
engine's dev server instead (same packet path, forward-everything policy, nothing else).
``--instructions`` also runs ``perf stat -e instructions,cycles,task-clock,context-switches -p``
on each SFU over the window and prints instructions and cycles per forwarded packet (they barely
move with the machine's load, unlike CPU time); where the CPU exposes no hardware counters (a VM
without a virtual PMU) perf says so and the figures read "not supported": then
``bench.bridge_hotpath --instructions`` counts the hot path's instructions under callgrind.
``PARLEY_BENCH_TREE=<checkout> python <copy of this file>`` measures another checkout of the
project (an older commit) with this script; it also runs trees from before the media package was
regrouped.

``--parley-loop`` picks the bridge's per-receiver forwarding loop: C as deployed (default; the
bench stops if the bridge reports another), Python, or both side by side as two bridges.

Figures, per SFU and scenario, over a measurement window after a warm-up:
- CPU µs per forwarded packet: the SFU process's CPU time (user+system, all threads, from the
  kernel's per-process CPU clock) divided by the RTP packets subscribers received that were sent
  in the window;
- idle CPU: the same process's CPU per second with every participant connected and sending
  consent checks, before any media (what the process costs by itself);
- loss: 1 - received / (sent x subscribers of that stream);
- latency: send-to-receive time through the SFU (both ends in this process, one clock), p50/p95;
  it includes the client's own receive path, identical for both SFUs;
- RSS of the SFU process at the end of the scenario.

Clients are light peers (``bench/bridge_peer.py``): real ICE, DTLS and SRTP, pre-encoded RTP, no
codecs, so one Python process can drive 40 subscribers. Everything runs inside a private network
namespace (``unshare -n``) with a veth carrying 10.99.0.1/32, because Janus (libnice) does not
gather loopback candidates; no packet leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# PARLEY_BENCH_TREE runs this script against another checkout of the project (a copy of this
# file kept outside it, so the same measurement runs on an older tree)
REPO = Path(os.environ.get("PARLEY_BENCH_TREE") or Path(__file__).resolve().parents[1]).resolve()
sys.path.insert(0, str(REPO))

from bench.bridge_peer import (  # noqa: E402
    LEVEL_EXTENSION_ID,
    SEND_TIME_EXTENSION_ID,
    SEND_TIME_URI,
    LightPeer,
    MeetingCounters,
    MeetingPeer,
    Publisher,
    Receipts,
    Remote,
    SimulcastSender,
    encode_vp8,
    encode_vp8_layer,
    send_time,
)

try:
    from services.bridge.media.packets.rtp import AUDIO_LEVEL_URI
    from services.bridge.media.transport.aiortc_adapter import DtlsCertificate
except ImportError:  # a tree from before the media package was regrouped into subpackages
    from services.bridge.media.aiortc_adapter import DtlsCertificate  # type: ignore[no-redef]
    from services.bridge.media.rtp import AUDIO_LEVEL_URI  # type: ignore[no-redef]
from services.common import bridge_channel, colibri  # noqa: E402
from tests.integration.harness import ServiceProcess, free_port, free_tcp_udp_port  # noqa: E402

NETNS_ENV = "PARLEY_BENCH_NETNS"
MEDIA_IP = "10.99.0.1"
VIDEO_PT, AUDIO_PT = 96, 111
FANOUT_FPS, MEETING_FPS = 30, 25
OPUS = colibri.PayloadType(id=AUDIO_PT, name="opus", clockrate=48000, channels=2)
VP8 = colibri.PayloadType(
    id=VIDEO_PT,
    name="VP8",
    clockrate=90000,
    rtcp_fbs=[
        colibri.RtcpFb(type="nack"),
        colibri.RtcpFb(type="nack", subtype="pli"),
        colibri.RtcpFb(type="ccm", subtype="fir"),
    ],
)


# ---- network namespace -----------------------------------------------------------------------


def enter_namespace() -> None:
    """Re-run this script in a fresh network namespace (root) with lo and a veth address."""
    if os.environ.get(NETNS_ENV) == "1":
        for cmd in (
            "ip link set lo up",
            "ip link add v0 type veth peer name v1",
            f"ip addr add {MEDIA_IP}/32 dev v0",
            "ip link set v0 up",
            "ip link set v1 up",
        ):
            subprocess.run(cmd.split(), check=True)
        return
    env = {**os.environ, NETNS_ENV: "1", "PARLEY_BENCH_TREE": str(REPO)}
    script = str(Path(__file__).resolve())
    os.execvpe("unshare", ["unshare", "-n", sys.executable, script, *sys.argv[1:]], env)


# ---- process figures ---------------------------------------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)


def cpu_seconds(pid: int) -> float:
    """CPU time of the whole process (every thread, living or exited), in nanosecond resolution:
    the kernel's per-process CPU clock (``clock_getcpuclockid``). /proc's utime+stime only has
    10 ms ticks, which is 5-10 % of a small fan-out's CPU over a window of a few seconds."""
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
        return time.clock_gettime(clock.value)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PerfStat:
    """Hardware counters of one process over a window: ``perf stat -e instructions,cycles -p``.
    Instructions retired barely move with the machine's load, unlike CPU time. Where the CPU
    exposes no counters (a VM without a virtual PMU) perf reports them as not supported and the
    figures stay None; task-clock (CPU time, the same as ``cpu_seconds``) and context switches
    are software events and always counted."""

    EVENTS = ("instructions", "cycles", "task-clock", "context-switches")

    def __init__(self, pid: int) -> None:
        self.output = Path(tempfile.mkstemp(prefix="parley-bench-perf-", suffix=".csv")[1])
        self.proc = subprocess.Popen(
            ["perf", "stat", "-x,", "-o", str(self.output), "-e", ",".join(self.EVENTS), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, float | None]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        counts: dict[str, float | None] = dict.fromkeys(self.EVENTS)
        for line in self.output.read_text().splitlines():
            fields = line.split(",")
            if len(fields) < 3 or line.startswith("#"):
                continue
            event = fields[2].split(":")[0]
            if event in counts:
                try:
                    counts[event] = float(fields[0])
                except ValueError:  # "<not supported>" / "<not counted>"
                    counts[event] = None
        self.output.unlink(missing_ok=True)
        return counts


def per_packet_counts(counts: dict[str, float | None] | None, packets: int) -> dict[str, Any]:
    if counts is None:
        return {}
    row: dict[str, Any] = {}
    for event, key in (("instructions", "instructions_per_packet"), ("cycles", "cycles_per_packet")):
        value = counts.get(event)
        row[key] = round(value / packets) if value is not None and packets else "not supported"
    switches = counts.get("context-switches")
    if switches is not None and packets:
        row["context_switches_per_1000_packets"] = round(1000 * switches / packets, 1)
    return row


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (and threads it creates later, which inherit the mask) on ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- SDP helpers (Janus speaks SDP) ------------------------------------------------------------


def sdp_transport(sdp: str) -> tuple[str, str, list[tuple[str, str]], tuple[str, int], str]:
    ufrag = pwd = setup = ""
    fingerprints: list[tuple[str, str]] = []
    address: tuple[str, int] | None = None
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:") and not ufrag:
            ufrag = line.split(":", 1)[1].strip()
        elif line.startswith("a=ice-pwd:") and not pwd:
            pwd = line.split(":", 1)[1].strip()
        elif line.startswith("a=fingerprint:") and not fingerprints:
            algorithm, value = line.split(":", 1)[1].split()
            fingerprints.append((algorithm, value))
        elif line.startswith("a=setup:") and not setup:
            setup = line.split(":", 1)[1].strip()
        elif line.startswith("a=candidate:") and address is None:
            parts = line.split()
            if parts[2].lower() == "udp" and ":" not in parts[4]:
                address = (parts[4], int(parts[5]))
    if not (ufrag and pwd and fingerprints and address):
        raise RuntimeError(f"incomplete SDP from the SFU:\n{sdp}")
    return ufrag, pwd, fingerprints, address, setup


def local_attrs(peer: LightPeer, setup: str) -> list[str]:
    host, port = peer.address
    return [
        f"a=ice-ufrag:{peer.ufrag}",
        f"a=ice-pwd:{peer.pwd}",
        f"a=fingerprint:sha-256 {peer.fingerprint}",
        f"a=setup:{setup}",
        "a=rtcp-mux",
        f"a=candidate:1 1 udp 2130706431 {host} {port} typ host",
        "a=end-of-candidates",
    ]


def publisher_offer(peer: LightPeer, pub: Publisher) -> str:
    mids = ["0", "1"] if pub.audio else ["0"]
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {' '.join(mids)}",
        "a=msid-semantic: WMS bench",
    ]
    if pub.audio:
        lines += [
            f"m=audio 9 UDP/TLS/RTP/SAVPF {AUDIO_PT}",
            f"c=IN IP4 {MEDIA_IP}",
            "a=mid:0",
            "a=sendonly",
            *local_attrs(peer, "actpass"),
            f"a=rtpmap:{AUDIO_PT} opus/48000/2",
            f"a=ssrc:{pub.audio_ssrc} cname:bench",
            f"a=ssrc:{pub.audio_ssrc} msid:bench a0",
        ]
    mid = mids[-1]
    lines += [
        f"m=video 9 UDP/TLS/RTP/SAVPF {VIDEO_PT}",
        f"c=IN IP4 {MEDIA_IP}",
        f"a=mid:{mid}",
        "a=sendonly",
        *local_attrs(peer, "actpass"),
        f"a=rtpmap:{VIDEO_PT} VP8/90000",
        f"a=rtcp-fb:{VIDEO_PT} nack",
        f"a=rtcp-fb:{VIDEO_PT} nack pli",
        f"a=rtcp-fb:{VIDEO_PT} ccm fir",
        f"a=ssrc:{pub.video_ssrc} cname:bench",
        f"a=ssrc:{pub.video_ssrc} msid:bench v0",
    ]
    return "\r\n".join(lines) + "\r\n"


def subscriber_answer(peer: LightPeer, offer: str) -> str:
    session, media, current = [], [], None
    for line in offer.splitlines():
        if line.startswith("m="):
            current = [line]
            media.append(current)
        elif current is None:
            session.append(line)
        else:
            current.append(line)
    out = ["v=0", "o=- 2 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    out += [line for line in session if line.startswith("a=group:")]
    for m in media:
        head = m[0].split()
        kind, port, fmts = head[0][2:], head[1], head[3:]
        mid = next((x.split(":", 1)[1] for x in m if x.startswith("a=mid:")), "")
        if port == "0" or kind == "application":
            out += [f"m={kind} 0 {head[2]} {' '.join(fmts)}", f"a=mid:{mid}", "a=inactive"]
            continue
        fmt = fmts[0]
        out += [
            f"m={kind} 9 UDP/TLS/RTP/SAVPF {fmt}",
            f"c=IN IP4 {MEDIA_IP}",
            f"a=mid:{mid}",
            "a=recvonly",
            *local_attrs(peer, "active"),
        ]
        out += [x for x in m if x.startswith((f"a=rtpmap:{fmt} ", f"a=fmtp:{fmt} ", f"a=rtcp-fb:{fmt} "))]
    return "\r\n".join(out) + "\r\n"


# ---- the two SFUs --------------------------------------------------------------------------------


def bundle_channel_fields(endpoint: str) -> dict[str, Any]:
    """What each of a participant's Colibri channels says, as the focus allocates them: one
    channel bundle per endpoint, sending and receiving."""
    return {
        "endpoint": endpoint,
        "channel_bundle_id": endpoint,
        "initiator": True,
        "direction": "sendrecv",
        "expire": 60,
    }


class SfuProcess:
    """An SFU run as a child process with an HTTP client to its control API; subclasses set
    ``proc`` and ``http`` and drive the API."""

    proc: ServiceProcess
    http: httpx.AsyncClient

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    async def start(self) -> None:
        await asyncio.to_thread(self.proc.start)

    async def stop(self) -> None:
        await self.http.aclose()
        self.proc.stop()


class EngineSfu(SfuProcess):
    """The media engine alone (``tests.integration.media_devserver``): the same packet path with the
    default forward-everything policy, without Colibri, the intelligence policy or the bridge's
    servers and timers."""

    name = "parley-engine"

    def __init__(self) -> None:
        self.http_port = free_port()
        self.proc = ServiceProcess.python_module(
            "bench-parley",
            "tests.integration.media_devserver",
            {
                "MEDIA_HTTP_PORT": str(self.http_port),
                "JVB_PORT": "0",
                "JVB_BIND_ADDRESS": MEDIA_IP,
                "JVB_ADVERTISE_IPS": MEDIA_IP,
                "LOG_LEVEL": "WARNING",
            },
            health_url=f"http://127.0.0.1:{self.http_port}/health",
        )
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.http_port}", timeout=10)

    async def _endpoint(self, room: str, name: str, peer: LightPeer, sources: dict[str, Any]) -> None:
        url = f"/conferences/{room}/endpoints/{name}"
        local = (await self.http.post(url)).raise_for_status().json()
        transport = {
            "ufrag": peer.ufrag,
            "pwd": peer.pwd,
            "fingerprints": [{"hash": "sha-256", "fingerprint": peer.fingerprint, "setup": "active"}],
        }
        (await self.http.put(f"{url}/transport", json=transport)).raise_for_status()
        (await self.http.put(f"{url}/sources", json=sources)).raise_for_status()
        candidate = local["candidates"][0]
        await peer.connect(
            Remote(
                local["ufrag"],
                local["pwd"],
                [(f["hash"], f["fingerprint"]) for f in local["fingerprints"]],
                (candidate["ip"], candidate["port"]),
                "client",
            )
        )

    async def join(
        self, room: str, name: str, peers: list[LightPeer], pub: Publisher | None, feeds: list[str]
    ) -> str:
        """Parley needs one transport per participant: it sends and receives on ``peers[0]``."""
        sources: dict[str, Any] = {
            "payload_types": [
                {
                    "id": VIDEO_PT,
                    "name": "VP8",
                    "clockrate": 90000,
                    "rtcp_fbs": [["nack", ""], ["nack", "pli"]],
                },
                {"id": AUDIO_PT, "name": "opus", "clockrate": 48000, "channels": 2},
            ]
        }
        if pub is not None:
            sources["video_ssrcs"] = [pub.video_ssrc]
            sources["audio_ssrcs"] = [pub.audio_ssrc] if pub.audio else []
        await self._endpoint(room, name, peers[0], sources)
        return name

    async def close_room(self, room: str) -> None:
        (await self.http.delete(f"/conferences/{room}")).raise_for_status()

    peers_per_participant = 1


class BridgeSfu(SfuProcess):
    """The bridge as deployed (``python -m services.bridge``), driven through Colibri REST the way
    the focus drives it: its conference-intelligence policy, both HTTP servers, the Colibri
    WebSocket server and every timer run. Only brewery presence is off (no XMPP server here)."""

    name = "parley"
    peers_per_participant = 1

    def __init__(self, loop: str = "c") -> None:
        self.loop = loop
        if loop == "python":
            self.name = "parley-python-loop"
        self.private_port = free_port()
        public_port = free_port()
        self.conf = Path(tempfile.mkstemp(prefix="parley-bench-bridge-", suffix=".conf")[1])
        self.conf.write_text(f'videobridge.ice.bind-address = "{MEDIA_IP}"\n')
        self.proc = ServiceProcess.python_module(
            "bench-bridge",
            "services.bridge",
            {
                "JVB_CONFIG": str(self.conf),
                "JVB_COLIBRI_PORT": str(self.private_port),
                "JVB_PUBLIC_PORT": str(public_port),
                "JVB_PORT": str(free_tcp_udp_port()),
                "JVB_ADVERTISE_IPS": MEDIA_IP,
                "JVB_WS_SERVER_ID": "bench",
                "JVB_WS_DOMAIN": f"127.0.0.1:{public_port}",
                "JVB_WS_TLS": "false",
                "JVB_NATIVE_FORWARDING": "true" if loop == "c" else "false",
                "LOG_LEVEL": "WARNING",
            },
            health_url=f"http://127.0.0.1:{self.private_port}/about/health",
        )
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.private_port}", timeout=10)
        self._conferences: dict[str, str] = {}  # bench room -> Colibri conference id
        self._channels: dict[str, list[tuple[str, str]]] = {}  # room -> (content, channel id)

    async def start(self) -> None:
        await super().start()
        running = (await self.http.get("/colibri/stats")).raise_for_status().json()["forwarding_loop"]
        if running != {"c": "native", "python": "python"}[self.loop]:
            raise SystemExit(
                f"the bridge forwards with its {running} loop, not {self.loop}"
                " (build it: python -m services.bridge.media.forwarding.native)"
            )

    async def stop(self) -> None:
        await super().stop()
        self.conf.unlink(missing_ok=True)

    async def _patch(self, conference_id: str, body: colibri.Conference) -> dict[str, Any]:
        reply = await self.http.patch(f"/colibri/conferences/{conference_id}", json=body.to_json())
        return reply.raise_for_status().json()  # type: ignore[no-any-return]

    async def join(
        self, room: str, name: str, peers: list[LightPeer], pub: Publisher | None, feeds: list[str]
    ) -> str:
        """One channel bundle per participant (``peers[0]``), like the focus allocates it."""
        peer = peers[0]
        common = bundle_channel_fields(name)
        audio = colibri.Channel(
            **common,
            sources=[pub.audio_ssrc] if pub is not None and pub.audio else [],
            payload_types=[OPUS],
        )
        video = colibri.Channel(
            **common, sources=[pub.video_ssrc] if pub is not None else [], payload_types=[VP8]
        )
        await self._allocate(room, name, peer, audio, video)
        return name

    async def join_meeting(
        self, room: str, name: str, peer: LightPeer, sender: SimulcastSender, simulcast: bool, last_n: int
    ) -> str:
        """A 20-party meeting participant: audio with the RFC 6464 level extension, video with
        one SSRC per simulcast layer (in a ``SIM`` group when ``simulcast``, else each layer an
        independent stream), the video channel's ``last-n``. Returns its Colibri WebSocket URL."""
        common = bundle_channel_fields(name)
        audio = colibri.Channel(
            **common,
            sources=[sender.audio_ssrc],
            payload_types=[OPUS],
            rtp_hdrexts=[
                colibri.RtpHdrExt(id=SEND_TIME_EXTENSION_ID, uri=SEND_TIME_URI),
                colibri.RtpHdrExt(id=LEVEL_EXTENSION_ID, uri=AUDIO_LEVEL_URI),
            ],
        )
        video = colibri.Channel(
            **common,
            last_n=last_n,
            sources=list(sender.layer_ssrcs),
            ssrc_groups=[colibri.SsrcGroup(semantics="SIM", sources=list(sender.layer_ssrcs))]
            if simulcast
            else None,
            payload_types=[VP8],
            rtp_hdrexts=[colibri.RtpHdrExt(id=SEND_TIME_EXTENSION_ID, uri=SEND_TIME_URI)],
        )
        bundle = await self._allocate(room, name, peer, audio, video)
        return str(bundle["web-socket"])

    async def _allocate(
        self, room: str, name: str, peer: LightPeer, audio: colibri.Channel, video: colibri.Channel
    ) -> dict[str, Any]:
        """One channel bundle per participant, one PATCH, like the focus allocates it; then ICE
        and DTLS. Returns the bridge's side of the bundle's transport."""
        if room not in self._conferences:
            created = (await self.http.post("/colibri/conferences", json={})).raise_for_status().json()
            self._conferences[room] = created["id"]
            self._channels[room] = []
        conference_id = self._conferences[room]
        transport = colibri.IceUdpTransport(
            ufrag=peer.ufrag,
            pwd=peer.pwd,
            rtcp_mux=True,
            fingerprints=[colibri.Fingerprint(fingerprint=peer.fingerprint, hash="sha-256", setup="active")],
        )
        out = await self._patch(
            conference_id,
            colibri.Conference(
                id=conference_id,
                contents=[
                    colibri.Content(name="audio", channels=[audio]),
                    colibri.Content(name="video", channels=[video]),
                ],
                channel_bundles=[colibri.ChannelBundle(id=name, transport=transport)],
            ),
        )
        for content in out["contents"]:
            for channel in content.get("channels", []):
                if channel.get("endpoint") == name:
                    self._channels[room].append((content["name"], channel["id"]))
        bundle: dict[str, Any] = next(b for b in out["channel-bundles"] if b["id"] == name)["transport"]
        candidate = bundle["candidates"][0]
        await peer.connect(
            Remote(
                bundle["ufrag"],
                bundle["pwd"],
                [(f["hash"], f["fingerprint"]) for f in bundle["fingerprints"]],
                (candidate["ip"], candidate["port"]),
                "client",
            )
        )
        return bundle

    async def close_room(self, room: str) -> None:
        """Expire every channel (``expire: 0``), as the focus does when a conference ends."""
        conference_id = self._conferences.pop(room)
        by_content: dict[str, list[colibri.Channel]] = {}
        for content, channel_id in self._channels.pop(room):
            by_content.setdefault(content, []).append(colibri.Channel(id=channel_id, expire=0))
        await self._patch(
            conference_id,
            colibri.Conference(
                id=conference_id,
                contents=[colibri.Content(name=n, channels=c) for n, c in by_content.items()],  # type: ignore[arg-type]
            ),
        )


class JanusFeedNotReady(RuntimeError):
    """VideoRoom error 428 ("No such feed"): a publisher joined but its media is not up yet."""


class JanusSfu(SfuProcess):
    name = "janus"
    peers_per_participant = 2  # Janus VideoRoom: one PeerConnection to publish, one to subscribe

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="parley-bench-janus-"))
        self.http_port = free_port()
        self._write_config()
        self.proc = ServiceProcess(
            "bench-janus",
            ["janus", f"--config={self.dir}/janus.jcfg", f"--configs-folder={self.dir}"],
            health_url=f"http://127.0.0.1:{self.http_port}/janus/info",
        )
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.http_port}/janus", timeout=15)
        self.session: int | None = None
        self.events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._tx = 0
        self._rooms: dict[str, int] = {}
        self._handles: list[int] = []

    def _write_config(self) -> None:
        lib = "/usr/lib/x86_64-linux-gnu/janus"
        plugins = [p.name for p in Path(f"{lib}/plugins").glob("*.so") if "videoroom" not in p.name]
        transports = [p.name for p in Path(f"{lib}/transports").glob("*.so") if "http" not in p.name]
        (self.dir / "janus.jcfg").write_text(f"""
general: {{ configs_folder = "{self.dir}", plugins_folder = "{lib}/plugins",
  transports_folder = "{lib}/transports", events_folder = "{lib}/events", loggers_folder = "{lib}/loggers",
  debug_level = 3, session_timeout = 0, admin_secret = "bench", protected_folders = [] }}
certificates: {{ }}
media: {{ rtp_port_range = "30000-40000", ipv6 = false }}
nat: {{ ice_lite = true, ice_enforce_list = "v0", nice_debug = false }}
plugins: {{ disable = "{",".join(plugins)}" }}
transports: {{ disable = "{",".join(transports)}" }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
events: {{ broadcast = false }}
""")
        (self.dir / "janus.transport.http.jcfg").write_text(f"""
general: {{ json = "plain", base_path = "/janus", http = true, port = {self.http_port}, ip = "127.0.0.1",
  https = false }}
admin: {{ admin_http = false }}
""")
        (self.dir / "janus.plugin.videoroom.jcfg").write_text("general: { }\n")

    async def start(self) -> None:
        await super().start()
        reply = await self._post("", {"janus": "create"})
        self.session = reply["data"]["id"]
        self._poller = asyncio.ensure_future(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        await super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._tx += 1
        body = {**body, "transaction": f"t{self._tx}"}
        reply = (await self.http.post(path, json=body)).raise_for_status().json()
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus error: {reply}")
        return reply

    async def _poll(self) -> None:
        while True:
            try:
                events = (await self.http.get(f"/{self.session}", params={"maxev": 20}, timeout=40)).json()
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                sender = event.get("sender")
                if sender is not None and event.get("janus") == "event":
                    self.events.setdefault(sender, asyncio.Queue()).put_nowait(event)

    async def _attach(self) -> int:
        reply = await self._post(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = int(reply["data"]["id"])
        self.events.setdefault(handle, asyncio.Queue())
        self._handles.append(handle)
        return handle

    async def _message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        reply = await self._post(f"/{self.session}/{handle}", message)
        if reply.get("janus") == "success":
            return reply
        event = await asyncio.wait_for(self.events[handle].get(), 15)
        data = event.get("plugindata", {}).get("data", {})
        if data.get("error_code") == 428:
            raise JanusFeedNotReady(str(data))
        if "error" in data:
            raise RuntimeError(f"janus videoroom error: {data}")
        return event

    async def _room(self, room: str) -> int:
        if room not in self._rooms:
            handle = await self._attach()
            number = 1000 + len(self._rooms)
            await self._message(
                handle,
                {
                    "request": "create",
                    "room": number,
                    "publishers": 64,
                    "bitrate": 0,
                    "videocodec": "vp8",
                    "audiocodec": "opus",
                    "fir_freq": 0,
                },
            )
            self._rooms[room] = number
        return self._rooms[room]

    async def join(
        self, room: str, name: str, peers: list[LightPeer], pub: Publisher | None, feeds: list[str]
    ) -> str:
        """``peers[0]`` publishes (when ``pub``), ``peers[1]`` subscribes to ``feeds``."""
        number = await self._room(room)
        feed_id = name
        if pub is not None:
            handle = await self._attach()
            event = await self._message(
                handle,
                {
                    "request": "joinandconfigure",
                    "room": number,
                    "ptype": "publisher",
                    "display": name,
                    "audio": pub.audio,
                    "video": True,
                },
                {"type": "offer", "sdp": publisher_offer(peers[0], pub)},
            )
            feed_id = str(event["plugindata"]["data"]["id"])
            ufrag, pwd, fps, address, setup = sdp_transport(event["jsep"]["sdp"])
            await peers[0].connect(
                Remote(ufrag, pwd, fps, address, "client" if setup == "passive" else "server")
            )
        if feeds:
            handle = await self._attach()
            join = {
                "request": "join",
                "room": number,
                "ptype": "subscriber",
                "streams": [{"feed": int(f)} for f in feeds],
            }
            for attempt in range(50):
                try:
                    event = await self._message(handle, join)
                    break
                except JanusFeedNotReady:  # the publisher's PeerConnection is not up in Janus yet
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.2)
            offer = event["jsep"]["sdp"]
            ufrag, pwd, fps, address, _ = sdp_transport(offer)
            peer = peers[-1]
            await self._message(
                handle,
                {"request": "start", "room": number},
                {"type": "answer", "sdp": subscriber_answer(peer, offer)},
            )
            await peer.connect(Remote(ufrag, pwd, fps, address, "client"))
        return feed_id

    async def close_room(self, room: str) -> None:
        for handle in self._handles:
            try:
                await self._post(f"/{self.session}/{handle}", {"janus": "detach"})
            except (httpx.HTTPError, RuntimeError):
                pass
            self.events.pop(handle, None)
        self._handles.clear()


# ---- scenarios -----------------------------------------------------------------------------------


@dataclass
class Result:
    sfu: str
    scenario: str
    subscribers: int
    packets: int = 0
    expected: int = 0
    cpu: float = 0.0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    rss_start_mb: float = 0.0
    endpoints: int = 0
    idle_cpu: float = 0.0
    idle_seconds: float = 0.0
    counts: dict[str, float | None] | None = None  # perf stat over the window (--instructions)

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "sfu": self.sfu,
            "scenario": self.scenario,
            "endpoints": self.endpoints,
            "forwarded_pps": round(self.packets / self.seconds) if self.seconds else 0,
            "cpu_us_per_packet": round(self.cpu / self.packets * 1e6, 1) if self.packets else None,
            "cpu_percent": round(100 * self.cpu / self.seconds, 1) if self.seconds else None,
            "idle_cpu_ms_per_s": round(1000 * self.idle_cpu / self.idle_seconds, 2)
            if self.idle_seconds
            else None,
            "loss_percent": round(100 * (1 - self.packets / self.expected), 3) if self.expected else None,
            "latency_p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
            "latency_p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2) if lat else None,
            "rss_mb": round(self.rss_mb, 1),
            "rss_growth_mb": round(self.rss_mb - self.rss_start_mb, 1),
            **per_packet_counts(self.counts, self.packets),
        }


async def run_scenario(
    sfu: BridgeSfu | EngineSfu | JanusSfu,
    scenario: str,
    publishers: int,
    subscribers: int,
    frames: list[list[bytes]],
    fps: int,
    audio: bool,
    window: float,
    certificate: DtlsCertificate,
    idle: float = 0.0,
    publisher_peer: Callable[[], LightPeer] | None = None,
    subscriber_peer: Callable[[], LightPeer] | None = None,
    instructions: bool = False,
) -> Result:
    """``publishers`` participants send (and, in a meeting, receive each other); ``subscribers``
    extra participants only receive. ``publisher_peer``/``subscriber_peer`` make other peers than
    UDP ones (``bench/bridge_nat.py``: ICE-TCP, TURN)."""
    room = f"{scenario}-{sfu.name}-{time.monotonic_ns()}"
    receipts = Receipts()
    all_peers: list[LightPeer] = []
    pubs: list[Publisher] = []
    feed_ids: list[str] = []
    meeting = subscribers == 0
    publisher_peer = publisher_peer or (lambda: LightPeer(certificate, MEDIA_IP))
    subscriber_peer = subscriber_peer or (lambda: LightPeer(certificate, MEDIA_IP))
    for i in range(publishers):
        peers = [publisher_peer() for _ in range(sfu.peers_per_participant)]
        for peer in peers:
            await peer.open()
            peer.on_rtp = receipts.on_rtp
        pub = Publisher(peers[0], frames, fps, audio=audio)
        feeds = list(feed_ids) if meeting else []
        feed_ids.append(await sfu.join(room, f"p{i}", peers if meeting else peers[:1], pub, feeds))
        all_peers += peers
        pubs.append(pub)
    for i in range(subscribers):
        peer = subscriber_peer()
        await peer.open()
        peer.on_rtp = receipts.on_rtp
        await sfu.join(room, f"s{i}", [peer], None, feed_ids)
        all_peers.append(peer)
    if meeting and isinstance(sfu, JanusSfu):
        for i in range(len(feed_ids)):
            later = feed_ids[i + 1 :]
            if later:
                extra = LightPeer(certificate, MEDIA_IP)
                await extra.open()
                extra.on_rtp = receipts.on_rtp
                await sfu.join(room, f"p{i}-late", [extra], None, later)
                all_peers.append(extra)

    async def consent() -> None:  # browsers send a consent check every few seconds (RFC 7675)
        while True:
            await asyncio.sleep(2.0)
            for peer in all_peers:
                peer.keepalive()

    consent_task = asyncio.ensure_future(consent())
    idle_cpu = 0.0
    if idle > 0:  # everyone connected, consent checks running, no media yet
        await asyncio.sleep(1.0)
        idle0 = cpu_seconds(sfu.pid)
        await asyncio.sleep(idle)
        idle_cpu = cpu_seconds(sfu.pid) - idle0
    for pub in pubs:
        pub.start()
    await asyncio.sleep(2.0)  # warm-up: key frames, rates settle
    start = time.monotonic()
    receipts.window = (start, start + window)
    sent_before = [len(p.sent_log) for p in pubs]
    perf = PerfStat(sfu.pid) if instructions else None
    cpu0 = cpu_seconds(sfu.pid)
    rss0 = rss_mb(sfu.pid)
    await asyncio.sleep(window)
    cpu1 = cpu_seconds(sfu.pid)
    counts = perf.stop() if perf else None
    sent_in_window = [
        sum(1 for t in p.sent_log[b:] if t < start + window) for p, b in zip(pubs, sent_before, strict=True)
    ]
    await asyncio.sleep(1.0)  # stragglers
    result = Result(sfu.name, scenario, subscribers or publishers - 1)
    result.endpoints = publishers + subscribers
    result.packets = receipts.received
    fan = subscribers if subscribers else publishers - 1
    result.expected = sum(sent_in_window) * fan
    result.cpu = cpu1 - cpu0
    result.seconds = window
    result.idle_cpu = idle_cpu
    result.idle_seconds = idle
    result.counts = counts
    result.latencies = receipts.latencies
    result.rss_mb = rss_mb(sfu.pid)
    result.rss_start_mb = rss0
    consent_task.cancel()
    for pub in pubs:
        pub.stop()
    for peer in all_peers:
        peer.close()
    await sfu.close_room(room)
    await asyncio.sleep(0.5)
    return result


# ---- the 20-party meeting: last-N + simulcast against forwarding everything -----------------------

MEETING20_PARTIES = 20
MEETING20_LAYERS = ((320, 180, 60_000), (640, 360, 200_000), (1280, 720, 600_000))  # bit rates at 15 fps
MEETING20_TALKERS = 3  # p0, p1, p2 talk in turn, so the dominant speaker moves
MEETING20_TURN = 3.0  # seconds each talker talks
MEETING20_STAGE_HEIGHT, MEETING20_THUMBNAIL_HEIGHT = 720, 180


@dataclass(frozen=True)
class MeetingVariant:
    last_n: int  # Colibri ``last-n`` of every video channel
    stage_view: bool  # receivers send ReceiverVideoConstraints (stage + thumbnails)
    simulcast: bool  # the layers in a SIM group (else each layer is an independent stream)
    label: str


MEETING20_VARIANTS = {
    "meeting20-lastn": MeetingVariant(5, True, True, "last-n 5, simulcast, stage view"),
    "meeting20-all": MeetingVariant(-1, False, True, "last-n -1, simulcast, no constraints"),
    "meeting20-layers": MeetingVariant(-1, False, False, "last-n -1, every layer its own stream"),
}


def udp_drops() -> int:
    """Datagrams the kernel dropped at any UDP socket of this network namespace (a full receive
    buffer, the bridge's or a client's), from the ``drops`` column of /proc/net/udp."""
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return sum(int(line.split()[-1]) for line in lines if line.strip())


class StageViewReceiver:
    """A participant's bridge channel (the Colibri WebSocket) in Jitsi Meet's stage view: the
    dominant speaker on stage in high resolution, everyone else as thumbnails; the constraints are
    sent again each time the bridge announces a new dominant speaker (unless it is this
    participant, whose stage keeps the previous one)."""

    def __init__(self, name: str, url: str, stage_view: bool, last_n: int, first_on_stage: str) -> None:
        self.name = name
        self.url = url
        self.stage_view = stage_view
        self.last_n = last_n
        self.on_stage = first_on_stage
        self.dominant_changes = 0
        self.constraints_sent = 0
        self.forwarded_sources: list[str] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def constraints(self) -> str:
        stage = f"{self.on_stage}-v0"
        return bridge_channel.serialize(
            bridge_channel.ReceiverVideoConstraints(
                last_n=self.last_n,
                on_stage_sources=[stage],
                default_constraints=bridge_channel.VideoConstraints(max_height=MEETING20_THUMBNAIL_HEIGHT),
                constraints={stage: bridge_channel.VideoConstraints(max_height=MEETING20_STAGE_HEIGHT)},
            )
        )

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url) as socket:
            if self.stage_view:
                await socket.send(self.constraints())
                self.constraints_sent += 1
            self.ready.set()
            async for frame in socket:
                message = bridge_channel.parse(frame)
                if isinstance(message, bridge_channel.DominantSpeakerEndpointChangeEvent):
                    self.dominant_changes += 1
                    dominant = message.dominant_speaker_endpoint
                    if self.stage_view and dominant != self.name and dominant != self.on_stage:
                        self.on_stage = dominant
                        await socket.send(self.constraints())
                        self.constraints_sent += 1
                elif isinstance(message, bridge_channel.ForwardedSources):
                    self.forwarded_sources = message.forwarded_sources


async def run_meeting20(
    sfu: BridgeSfu,
    scenario: str,
    variant: MeetingVariant,
    layers: list[list[list[bytes]]],
    fps: int,
    ptime: float,
    window: float,
    certificate: DtlsCertificate,
    idle: float,
    instructions: bool = False,
) -> dict[str, Any]:
    if window >= 60:
        raise SystemExit("the 20-party meeting counts packets by abs-send-time, which wraps at 64 s")
    room = f"{scenario}-{time.monotonic_ns()}"
    counters = MeetingCounters()
    names = [f"p{i}" for i in range(MEETING20_PARTIES)]
    talkers = names[:MEETING20_TALKERS]
    talk_start = [float("inf")]

    def speaking_of(name: str) -> Any:
        def speaking() -> bool:
            elapsed = time.monotonic() - talk_start[0]
            return elapsed >= 0 and talkers[int(elapsed / MEETING20_TURN) % len(talkers)] == name

        return speaking

    peers: list[MeetingPeer] = []
    senders: list[SimulcastSender] = []
    receivers: list[StageViewReceiver] = []
    for i, name in enumerate(names):
        peer = MeetingPeer(certificate, MEDIA_IP, counters)
        await peer.open()
        sender = SimulcastSender(
            peer,
            layers,
            fps,
            speaking_of(name),
            i / MEETING20_PARTIES,
            ptime=ptime,
            video_pt=VIDEO_PT,
            audio_pt=AUDIO_PT,
        )
        url = await sfu.join_meeting(room, name, peer, sender, variant.simulcast, variant.last_n)
        receiver = StageViewReceiver(
            name, url, variant.stage_view, variant.last_n, talkers[1] if i == 0 else talkers[0]
        )
        receiver.start()
        peers.append(peer)
        senders.append(sender)
        receivers.append(receiver)
    await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in receivers)), 30)

    async def consent() -> None:
        while True:
            await asyncio.sleep(2.0)
            for peer in peers:
                peer.keepalive()

    consent_task = asyncio.ensure_future(consent())
    idle_cpu = 0.0
    if idle > 0:
        await asyncio.sleep(1.0)
        idle0 = cpu_seconds(sfu.pid)
        await asyncio.sleep(idle)
        idle_cpu = cpu_seconds(sfu.pid) - idle0
    talk_start[0] = time.monotonic()
    for sender in senders:
        sender.start()
    await asyncio.sleep(4.0)  # warm-up: first dominant speaker, key frames, layer bitrates measured
    changes0 = sum(r.dominant_changes for r in receivers)
    plis0 = sum(p.keyframe_requests for p in peers)
    drops0 = udp_drops()
    rss0 = rss_mb(sfu.pid)
    for peer in peers:
        peer.video_ssrcs_received.clear()
    client0 = time.process_time()
    perf = PerfStat(sfu.pid) if instructions else None
    cpu0 = cpu_seconds(sfu.pid)
    counters.counting = True
    start = time.monotonic()
    counters.window_start = send_time(start)
    counters.window_length = int(window * (1 << 18))
    await asyncio.sleep(window)
    counters.counting = False
    seconds = time.monotonic() - start
    cpu = cpu_seconds(sfu.pid) - cpu0
    counts = perf.stop() if perf else None
    client_cpu = time.process_time() - client0
    await asyncio.sleep(2.0)  # what was sent in the window and is still on its way
    drops = udp_drops() - drops0
    # what the policy should send: audio to everyone else; with last-N and stage view one
    # stage video at the top layer and last-N - 1 thumbnails at the lowest per receiver
    # (approximate: the sources and their frames vary); without, every sender's top layer or
    # every layer to everyone else
    others = MEETING20_PARTIES - 1
    by_layer = counters.sent_by_layer or [0]
    bytes_by_layer = counters.sent_bytes_by_layer or [0]
    if variant.stage_view:
        expected = counters.sent_audio * others + by_layer[-1] + (variant.last_n - 1) * by_layer[0]
        expected_bytes = (
            counters.sent_audio_bytes * others + bytes_by_layer[-1] + (variant.last_n - 1) * bytes_by_layer[0]
        )
    elif variant.simulcast:
        expected = (counters.sent_audio + by_layer[-1]) * others
        expected_bytes = (counters.sent_audio_bytes + bytes_by_layer[-1]) * others
    else:
        expected = (counters.sent_audio + sum(by_layer)) * others
        expected_bytes = (counters.sent_audio_bytes + sum(bytes_by_layer)) * others
    row: dict[str, Any] = {
        "sfu": sfu.name,
        "scenario": scenario,
        "variant": variant.label,
        "endpoints": MEETING20_PARTIES,
        "incoming_pps": round(counters.sent_packets / seconds),
        "incoming_kbps": round(counters.sent_bytes * 8 / seconds / 1000),
        "forwarded_pps": round(counters.arrived_packets / seconds),
        "sent_mbps": round((counters.arrived_bytes + counters.other_bytes) * 8 / seconds / 1e6, 2),
        "cpu_us_per_packet": round(cpu / counters.arrived_packets * 1e6, 1)
        if counters.arrived_packets
        else None,
        "cpu_percent": round(100 * cpu / seconds, 1),
        "idle_cpu_ms_per_s": round(1000 * idle_cpu / idle, 2) if idle else None,
        "loss_percent": round(100 * counters.seq_gaps / (counters.rtp_packets + counters.seq_gaps), 3)
        if counters.rtp_packets
        else None,
        "udp_drops": drops,
        "stream_jumps": counters.stream_jumps,
        "expected_pps": round(expected / seconds),
        "delivered_percent": round(100 * counters.rtp_packets / expected, 1) if expected else None,
        "expected_rtp_mbps": round(expected_bytes * 8 / seconds / 1e6, 2),
        "rtp_mbps": round(counters.rtp_bytes * 8 / seconds / 1e6, 2),
        "video_streams_per_receiver": round(
            sum(len(p.video_ssrcs_received) for p in peers) / MEETING20_PARTIES, 1
        ),
        "forwarded_sources_per_receiver": round(
            sum(len(r.forwarded_sources) for r in receivers) / MEETING20_PARTIES, 1
        ),
        "dominant_speaker_changes": round(
            (sum(r.dominant_changes for r in receivers) - changes0) / MEETING20_PARTIES, 1
        ),
        "keyframe_requests": sum(p.keyframe_requests for p in peers) - plis0,
        "client_cpu_percent": round(100 * client_cpu / seconds, 1),
        "rss_mb": round(rss_mb(sfu.pid), 1),
        "rss_growth_mb": round(rss_mb(sfu.pid) - rss0, 1),
        **per_packet_counts(counts, counters.arrived_packets),
    }
    # since the bridge started: what its C loop handed to the Python loop (payload rewrites)
    report = (await sfu.http.get("/colibri/stats")).raise_for_status().json()
    if report.get("packets_forwarded"):
        row["left_to_python_loop_percent"] = round(
            100 * report["packets_left_to_python_loop"] / report["packets_forwarded"], 1
        )
    consent_task.cancel()
    for sender in senders:
        sender.stop()
    for receiver in receivers:
        receiver.stop()
    for peer in peers:
        peer.close()
    await sfu.close_room(room)
    await asyncio.sleep(0.5)
    return row


def print_meeting20(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    header: tuple[str, ...] = (
        "variant",
        "forwarded_pps",
        "sent_mbps",
        "cpu_us_per_packet",
        *(["instructions_per_packet", "cycles_per_packet"] if "instructions_per_packet" in rows[0] else []),
        "cpu_percent",
        "loss_percent",
        "udp_drops",
        "stream_jumps",
        "expected_pps",
        "delivered_percent",
        "rtp_mbps",
        "expected_rtp_mbps",
        "video_streams_per_receiver",
        "dominant_speaker_changes",
        "keyframe_requests",
        "client_cpu_percent",
        "rss_mb",
    )
    print()
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    by_scenario = {row["scenario"]: row for row in rows}
    lastn = by_scenario.get("meeting20-lastn")
    if lastn is None:
        return

    def saved(part: float, whole: float) -> str:
        return f"{1 - part / whole:.1%}" if whole else "n/a"

    for other in ("meeting20-all", "meeting20-layers"):
        if other in by_scenario:
            base = by_scenario[other]
            print(
                f"last-n 5 + stage view vs {base['variant']}: "
                f"{saved(lastn['sent_mbps'], base['sent_mbps'])} of the bytes sent saved "
                f"({saved(lastn['forwarded_pps'], base['forwarded_pps'])} of the packets); "
                f"against what forwarding everything needs: "
                f"{saved(lastn['rtp_mbps'], base['expected_rtp_mbps'])} of the RTP bytes "
                f"({saved(lastn['forwarded_pps'], base['expected_pps'])} of the packets)"
            )


SCENARIOS = {
    "fanout5": (1, 5),
    "fanout10": (1, 10),
    "fanout20": (1, 20),
    "fanout40": (1, 40),
    "meeting10": (10, 0),
}


async def main(args: argparse.Namespace) -> None:
    chosen: list[str] = []
    for name in args.only.split(",") if args.only else [*SCENARIOS, "meeting20"]:
        if name == "meeting20":
            chosen += list(MEETING20_VARIANTS)
        elif name in SCENARIOS or name in MEETING20_VARIANTS:
            chosen.append(name)
        else:
            raise SystemExit(f"unknown scenario {name!r}")
    print(f"encoding VP8 test media (1 Mbps @ {FANOUT_FPS} fps, 400 kbps @ {MEETING_FPS} fps)...", flush=True)
    fanout_frames = await asyncio.to_thread(encode_vp8, 4, FANOUT_FPS, 1_000_000)
    meeting_frames = await asyncio.to_thread(encode_vp8, 4, MEETING_FPS, 400_000, 480, 270)
    for name, frames, fps in (
        ("fanout", fanout_frames, FANOUT_FPS),
        ("meeting", meeting_frames, MEETING_FPS),
    ):
        kbps = sum(len(p) for f in frames for p in f) * 8 / (len(frames) / fps) / 1000
        pps = sum(len(f) for f in frames) / (len(frames) / fps)
        print(f"  {name}: {kbps:.0f} kbps, {pps:.0f} video packets/s per publisher", flush=True)
    layers: list[list[list[bytes]]] = []
    if any(name in MEETING20_VARIANTS for name in chosen):
        fps = args.meeting20_fps
        for width, height, bitrate in MEETING20_LAYERS:
            # the same bits per frame at any frame rate: a lower rate means fewer packets
            frames = await asyncio.to_thread(encode_vp8_layer, 4, fps, bitrate * fps // 15, width, height)
            layers.append(frames)
            kbps = sum(len(p) for f in frames for p in f) * 8 / (len(frames) / fps) / 1000
            pps = sum(len(f) for f in frames) / (len(frames) / fps)
            print(f"  meeting20 layer {height}p: {kbps:.0f} kbps, {pps:.0f} packets/s", flush=True)
    certificate = DtlsCertificate()
    sfus: list[BridgeSfu | EngineSfu | JanusSfu] = []
    if args.parley in ("bridge", "both"):
        loops = ("c", "python") if args.parley_loop == "both" else (args.parley_loop,)
        sfus += [BridgeSfu(loop) for loop in loops]
    if args.parley in ("engine", "both"):
        sfus.append(EngineSfu())
    if not args.no_janus:
        sfus.append(JanusSfu())
    results = []
    meeting20_rows = []
    try:
        for sfu in sfus:
            await sfu.start()
        if args.pin:
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) < 2:
                raise SystemExit("--pin needs two CPUs")
            for sfu in sfus:
                pin_process(sfu.pid, {cpus[0]})
            pin_process(os.getpid(), set(cpus[1:]))
        for scenario in chosen:
            if scenario in MEETING20_VARIANTS:
                # last-N, constraints and the bridge channel need the bridge as deployed
                bridges = [s for s in sfus if isinstance(s, BridgeSfu)]
                for bridge in bridges:
                    row = await run_meeting20(
                        bridge,
                        scenario,
                        MEETING20_VARIANTS[scenario],
                        layers,
                        args.meeting20_fps,
                        args.meeting20_ptime / 1000,
                        args.window,
                        certificate,
                        args.idle,
                        args.instructions,
                    )
                    meeting20_rows.append(row)
                    print(json.dumps(row), flush=True)
                continue
            publishers, subscribers = SCENARIOS[scenario]
            meeting = subscribers == 0
            for sfu in sfus:
                result = await run_scenario(
                    sfu,
                    scenario,
                    publishers,
                    subscribers,
                    meeting_frames if meeting else fanout_frames,
                    MEETING_FPS if meeting else FANOUT_FPS,
                    meeting,
                    args.window,
                    certificate,
                    args.idle,
                    instructions=args.instructions,
                )
                row = result.row()
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for sfu in sfus:
            await sfu.stop()
    print_meeting20(meeting20_rows)
    if not results:
        return
    print()
    header: tuple[str, ...] = (
        "scenario",
        "sfu",
        "endpoints",
        "forwarded_pps",
        "cpu_us_per_packet",
        *(
            ["instructions_per_packet", "cycles_per_packet"]
            if "instructions_per_packet" in results[0]
            else []
        ),
        "cpu_percent",
        "idle_cpu_ms_per_s",
        "loss_percent",
        "latency_p50_ms",
        "latency_p95_ms",
        "rss_mb",
        "rss_growth_mb",
    )
    print(" | ".join(header))
    for row in results:
        print(" | ".join(str(row[h]) for h in header))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", type=float, default=8.0, help="measurement window per run, seconds")
    parser.add_argument(
        "--idle",
        type=float,
        default=4.0,
        help="seconds of CPU measured with everyone connected, before media",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios: "
        + ",".join([*SCENARIOS, "meeting20", *MEETING20_VARIANTS])
        + " (meeting20 = its three variants)",
    )
    parser.add_argument(
        "--parley",
        choices=("bridge", "engine", "both"),
        default="bridge",
        help="the bridge process as deployed (default), the media engine's dev server, or both",
    )
    parser.add_argument(
        "--parley-loop",
        choices=("c", "python", "both"),
        default="c",
        help="the bridge's per-receiver forwarding loop: C (as deployed), Python, or both side by side",
    )
    parser.add_argument("--no-janus", action="store_true", help="measure Parley only")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each SFU's instructions and cycles over the window with perf stat "
        "(root; needs a CPU whose counters perf can read) and print them per forwarded packet",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="SFUs on the first CPU, the clients on the others, so delivering a packet to a "
        "client never preempts the SFU on its own CPU",
    )
    parser.add_argument(
        "--meeting20-fps",
        type=int,
        default=15,
        help="video frame rate of the 20-party meeting (same bits per frame)",
    )
    parser.add_argument(
        "--meeting20-ptime", type=int, default=20, help="audio packet interval of the 20-party meeting, ms"
    )
    enter_namespace()
    import uvloop

    uvloop.run(main(parser.parse_args()))
