"""One recording: its directory, per-participant WebM writers, the composed output, its state.

Layout on disk (``recorder.output-dir``)::

    <output-dir>/<room name>-<session id>/
        recording.json        state, room, mode, times, files (rewritten on every change)
        <participant>.webm    per participant, remuxed (file mode)
        composed.mkv          the grid with names and mixed audio (file mode)

In stream mode the composed output goes to the RTMP URL instead of ``composed.mkv``. A
recording whose process died keeps ``"state": "recording"`` in its ``recording.json``; the next
recorder process marks it ``interrupted`` (:func:`recover`); its files are playable up to the
last cluster written.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.bridge_channel import DominantSpeakerEndpointChangeEvent, ReceiverVideoConstraints
from services.common.jibri import RecordingMode

from .composite import Composer
from .tracks import TrackWriter

log = logging.getLogger("recorder.recording")

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_PARTICIPANTS = 64


def safe_name(text: str, limit: int = 64) -> str:
    return _SAFE.sub("_", text)[:limit].strip("._") or "x"


@dataclass
class CompositeSettings:
    width: int = 640
    height: int = 360
    fps: int = 15
    latency: float = 0.6
    video_bitrate: int = 800_000
    preset: str = "ultrafast"
    crf: int = 25  # files with file_rate_control "crf"; live streams go at video_bitrate
    layout: str = "grid"
    file_rate_control: str = "qp"  # "qp" (constant quantizer) or "crf" (constant quality)
    qp: int = 23


@dataclass
class Recording:
    session_id: str
    room: str
    mode: RecordingMode
    directory: Path
    stream_url: str | None = None
    composite: CompositeSettings = field(default_factory=CompositeSettings)
    on_first_media: Callable[[Recording], None] | None = None
    state: str = "recording"
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    failure: str | None = None

    def __post_init__(self) -> None:
        self.origin = time.monotonic()
        self.writers: dict[str, TrackWriter] = {}
        self._lock = threading.Lock()
        self._media_seen = False
        target = (
            self.stream_url if self.mode is RecordingMode.STREAM else str(self.directory / "composed.mkv")
        )
        fmt = "flv" if self.mode is RecordingMode.STREAM else "matroska"
        file = self.mode is RecordingMode.FILE  # a live stream keeps a bit rate (RTMP services ask for one)
        c = self.composite
        self.directory.mkdir(parents=True, exist_ok=True)
        self.composer = Composer(
            target or "", fmt, c.width, c.height, c.fps, c.latency, video_bitrate=c.video_bitrate,
            mode=c.layout, preset=c.preset,
            crf=c.crf if file and c.file_rate_control == "crf" else None,
            qp=c.qp if file and c.file_rate_control == "qp" else None,
        )  # fmt: skip
        self.composer.start()
        self.save()

    # ------------------------------------------------------------------ media in
    def encoded(self, owner: str, kind: str, data: bytes, at: float) -> bool:
        """One encoded frame of ``owner`` (event loop): to its file (file mode) and to the
        composer. True when the composer wants a key frame of this video."""
        if self.state != "recording":
            return False
        self._first_media()
        want_key = False
        if kind == "video":
            want_key = self.composer.video_packet(owner, at, data)
        else:
            self.composer.audio_packet(owner, at, data)
        if self.mode is not RecordingMode.FILE:
            return want_key
        with self._lock:
            writer = self.writers.get(owner)
            if writer is None:
                if len(self.writers) >= MAX_PARTICIPANTS:
                    return want_key
                writer = self.writers[owner] = TrackWriter(self.directory / self._file_name(owner), self.origin)
                self.save()
            if kind == "video":
                writer.video(data, at)
            else:
                writer.audio(data, at)
        return want_key

    def _file_name(self, owner: str) -> str:
        """``<participant>.webm``, unique: nicks are the guests' choice, and two that differ only in
        characters a file name cannot hold ("ada" and "ada!") must not write into one file."""
        taken = {w.path.name for w in self.writers.values()}
        base = safe_name(owner)
        name, n = f"{base}.webm", 1
        while name in taken:
            n += 1
            name = f"{base}-{n}.webm"
        return name

    def speaker_changed(self, event: DominantSpeakerEndpointChangeEvent) -> None:
        """The bridge's dominant speaker (its endpoint id is the participant's nick, as owners
        are named here)."""
        self.composer.speaker_changed(event.dominant_speaker_endpoint, event.previous_speakers)

    def constraints(self, sources: dict[str, list[str]]) -> ReceiverVideoConstraints:
        """What video to ask the bridge for now (``sources``: video source names by owner)."""
        return self.composer.constraints_for(self.composer.arrangement(), sources)

    def _first_media(self) -> None:
        if not self._media_seen:
            self._media_seen = True
            if self.on_first_media is not None:
                self.on_first_media(self)

    # ------------------------------------------------------------------ end
    def finish(self, state: str = "finished", failure: str | None = None) -> None:
        """Finalise every file (blocking: run it in a thread)."""
        if self.state != "recording":
            return
        self.state = "finishing"
        self.composer.stop()
        with self._lock:
            for writer in self.writers.values():
                writer.close()
        self.state = state
        self.failure = failure or self.composer.error
        self.ended_at = time.time()
        self.save()
        log.info("recording %s %s: %s", self.session_id, state, ", ".join(f["name"] for f in self.files()))

    # ------------------------------------------------------------------ listing
    def files(self) -> list[dict[str, Any]]:
        return list_files(self.directory)

    def view(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "room": self.room,
            "mode": self.mode.value,
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "failure": self.failure,
            "stream": self.mode is RecordingMode.STREAM,
            "composed_frames": self.composer.frames_written,
            "composed_pictures": self.composer.pictures_written,
            "participants": sorted(self.writers),
            "directory": str(self.directory),
            "files": self.files(),
        }

    def save(self) -> None:
        meta = {k: v for k, v in self.view().items() if k != "files"}
        tmp = self.directory / "recording.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.directory / "recording.json")


def list_files(directory: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".webm", ".mkv") and path.is_file():
            out.append({"name": path.name, "bytes": path.stat().st_size})
    return out


def recover(output_dir: Path) -> list[dict[str, Any]]:
    """Recordings on disk (finished ones and those a dead process left behind, now marked
    ``interrupted``), newest first."""
    found: list[dict[str, Any]] = []
    if not output_dir.is_dir():
        return found
    for meta_path in output_dir.glob("*/recording.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("state") in ("recording", "finishing"):
            meta["state"] = "interrupted"
            meta_path.write_text(json.dumps(meta, indent=1))
        meta["files"] = list_files(meta_path.parent)
        found.append(meta)
    found.sort(key=lambda m: m.get("started_at") or 0, reverse=True)
    return found
