"""SSRC-signalled simulcast: the source model, layer measurements and the per-receiver projection.

* :func:`video_sources` turns what an endpoint sends (``MediaSources``: video SSRCs, ``SIM`` and
  ``FID`` ssrc-groups) into :class:`VideoSource` objects, one per camera/screen, named
  ``<endpoint>-v0``, ``-v1``… with their layers ordered low to high (the order of the SIM group).
* :class:`LayerMeter` measures each layer's bitrate and learns its resolution from VP8 key frames
  (O(1) per packet), so the allocator (``lastn.py``) knows what each layer costs and shows.
* :class:`SimulcastProjection` is one receiver's view of one source: it forwards one layer at a
  time, switches to the target layer only at a key frame of that layer, and rewrites SSRC,
  sequence number, RTP timestamp and the VP8 picture id / TL0PICIDX in place so the receiver sees
  a single continuous stream on the source's first SSRC.

No I/O. Retransmissions (RTX) are not projected: the bridge answers NACKs from its own packet
cache with the projected packets.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .model import MediaSources
from .vp8 import keyframe_size, parse_descriptor, rewrite_descriptor

VIDEO_CLOCK_RATE = 90_000
_SEQ_TS_SSRC = struct.Struct("!HII")
DEFAULT_TOP_HEIGHT = 720


def video_source_name(endpoint: str, index: int = 0) -> str:
    """The bridge-channel name of an endpoint's ``index``-th video source (``<endpoint>-v0``)."""
    return f"{endpoint}-v{index}"


def audio_source_name(endpoint: str, index: int = 0) -> str:
    """The bridge-channel name of an endpoint's ``index``-th audio source (``<endpoint>-a0``)."""
    return f"{endpoint}-a{index}"


@dataclass(frozen=True)
class SimulcastLayer:
    """One encoding of a source: its SSRC, the RTX SSRC paired with it by ``FID`` (if any)."""

    index: int
    ssrc: int
    rtx_ssrc: int | None = None


@dataclass(frozen=True)
class VideoSource:
    """One video source of an endpoint with its layers, lowest resolution first."""

    name: str
    endpoint: str
    layers: tuple[SimulcastLayer, ...]

    @property
    def primary_ssrc(self) -> int:
        """The SSRC receivers see for this source whatever layer they get (the lowest layer's)."""
        return self.layers[0].ssrc

    @property
    def ssrcs(self) -> tuple[int, ...]:
        return tuple(layer.ssrc for layer in self.layers)

    def layer_of(self, ssrc: int) -> int:
        """Index of the layer sent on ``ssrc``, or -1."""
        for layer in self.layers:
            if layer.ssrc == ssrc:
                return layer.index
        return -1


def video_sources(endpoint: str, sources: MediaSources) -> list[VideoSource]:
    """The video sources an endpoint sends, from its SSRCs and ``SIM``/``FID`` groups.

    Each ``SIM`` group is one source with a layer per SSRC (group order = low to high); every
    other video SSRC that is not the RTX half of a ``FID`` pair is a single-layer source.
    Raises ``ValueError`` naming the group when a group refers to SSRCs that are not video SSRCs
    of the endpoint, or an SSRC sits in two SIM groups.
    """
    video = set(sources.video_ssrcs)
    rtx_of: dict[int, int] = {}
    for semantics, ssrcs in sources.ssrc_groups:
        if semantics not in ("SIM", "FID"):
            continue
        unknown = [s for s in ssrcs if s not in video]
        if unknown:
            raise ValueError(f"ssrc-group {semantics} {ssrcs}: {unknown} not among the video SSRCs")
        if semantics == "FID":
            if len(ssrcs) != 2:
                raise ValueError(f"ssrc-group FID {ssrcs}: needs exactly two SSRCs (media, rtx)")
            rtx_of[ssrcs[0]] = ssrcs[1]
    rtx = set(rtx_of.values())
    result: list[VideoSource] = []
    grouped: set[int] = set()
    for semantics, ssrcs in sources.ssrc_groups:
        if semantics != "SIM":
            continue
        if grouped.intersection(ssrcs) or len(set(ssrcs)) != len(ssrcs):
            raise ValueError(f"ssrc-group SIM {ssrcs}: an SSRC appears in more than one layer")
        if rtx.intersection(ssrcs):
            raise ValueError(f"ssrc-group SIM {ssrcs}: contains an RTX SSRC")
        grouped.update(ssrcs)
        layers = tuple(SimulcastLayer(i, s, rtx_of.get(s)) for i, s in enumerate(ssrcs))
        result.append(VideoSource(video_source_name(endpoint, len(result)), endpoint, layers))
    for ssrc in sources.video_ssrcs:
        if ssrc in grouped or ssrc in rtx:
            continue
        grouped.add(ssrc)
        layer = SimulcastLayer(0, ssrc, rtx_of.get(ssrc))
        result.append(VideoSource(video_source_name(endpoint, len(result)), endpoint, (layer,)))
    return result


def default_layer_heights(count: int, top: int = DEFAULT_TOP_HEIGHT) -> list[int]:
    """Heights assumed before a key frame tells: each layer half the next (Chrome's scaling)."""
    return [max(1, top >> (count - 1 - i)) for i in range(count)]


class LayerMeter:
    """Bitrate and resolution of each layer (by SSRC) of the conference's video.

    :meth:`on_packet` is O(1): bytes accumulate in the current window; the rate is fixed when a
    window of ``window`` seconds closes. A layer that sent nothing for two windows reads 0 bps.
    """

    __slots__ = ("_heights", "_rates", "window")

    def __init__(self, window: float = 0.5) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        self.window = window
        self._rates: dict[int, list[float]] = {}  # ssrc -> [window start, bytes, last rate bps]
        self._heights: dict[int, int] = {}

    def on_packet(self, ssrc: int, size: int, now: float) -> None:
        state = self._rates.get(ssrc)
        if state is None:
            self._rates[ssrc] = [now, float(size), 0.0]
            return
        elapsed = now - state[0]
        if elapsed >= self.window:
            state[2] = state[1] * 8 / elapsed
            state[0] = now
            state[1] = float(size)
        else:
            state[1] += size

    def on_keyframe(
        self, ssrc: int, packet: bytes | bytearray | memoryview, payload_offset: int, end: int
    ) -> None:
        """Learn the layer's height from a VP8 key-frame header (call for key-frame packets)."""
        size = keyframe_size(packet, payload_offset, end)
        if size is not None:
            self._heights[ssrc] = size[1]

    def bitrate(self, ssrc: int, now: float) -> float:
        state = self._rates.get(ssrc)
        if state is None or now - state[0] >= 2 * self.window:
            return 0.0
        return state[2]

    def height(self, ssrc: int) -> int | None:
        return self._heights.get(ssrc)

    def layer_heights(self, source: VideoSource) -> list[int]:
        """Learned heights where known, the default guess elsewhere."""
        guess = default_layer_heights(len(source.layers))
        return [self._heights.get(layer.ssrc, guess[layer.index]) for layer in source.layers]

    def forget(self, ssrcs: Sequence[int]) -> None:
        for ssrc in ssrcs:
            self._rates.pop(ssrc, None)
            self._heights.pop(ssrc, None)


def highest_layer_within(heights: Sequence[int], max_height: int) -> int:
    """Index of the highest layer not taller than ``max_height`` (-1 = no limit); the lowest
    layer when all are taller; -1 when ``max_height`` is 0 (the receiver wants none)."""
    if max_height == 0 or not heights:
        return -1
    if max_height < 0:
        return len(heights) - 1
    best = 0
    for i, height in enumerate(heights):
        if height <= max_height:
            best = i
    return best


def rtp_payload_bounds(packet: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(payload offset, payload end) of an RTP packet, after CSRCs, header extension and before
    padding; (-1, -1) when malformed."""
    n = len(packet)
    if n < 12:
        return -1, -1
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if offset + 4 > n:
            return -1, -1
        offset += 4 + 4 * ((packet[offset + 2] << 8) | packet[offset + 3])
    end = n
    if packet[0] & 0x20:
        end -= packet[n - 1]
    if offset > end:
        return -1, -1
    return offset, end


class SimulcastProjection:
    """What one receiver gets of one video source: one layer, rewritten to look continuous.

    ``target`` is set by the allocator (``-1`` = forward nothing). :meth:`project` is called per
    packet of the source, rewrites it in place and says whether to send it. A switch to the target
    layer happens on the first key frame of that layer; until then the current layer keeps
    flowing (or nothing, at the start). :attr:`keyframe_wanted` names the SSRC the bridge should
    send a PLI to while a switch waits. ``seq_offset`` and ``ts_offset`` are added (mod 2^16,
    mod 2^32) to the sequence numbers and timestamps of the current layer (plain attributes: the
    forwarder reads them for every packet).
    """

    __slots__ = (
        "_last_out_seq",
        "_last_out_time",
        "_last_out_ts",
        "_last_pid",
        "_last_tl0",
        "_pid_offset",
        "_started",
        "_switch_seq",
        "_tl0_offset",
        "current",
        "layer_ssrcs",
        "out_ssrc",
        "seq_offset",
        "switches",
        "target",
        "ts_offset",
        "wait_for_keyframe",
    )

    def __init__(self, source: VideoSource, wait_for_keyframe: bool | None = None) -> None:
        """``wait_for_keyframe``: start and switch only at key frames (default: when the source
        has more than one layer; a single-layer stream starts at once and its receiver asks for
        a key frame itself)."""
        self.wait_for_keyframe = len(source.layers) > 1 if wait_for_keyframe is None else wait_for_keyframe
        self.out_ssrc = source.primary_ssrc
        self.layer_ssrcs = source.ssrcs
        self.target = -1
        self.current = -1
        self.switches = 0
        self._started = False
        self.seq_offset = 0
        self.ts_offset = 0
        self._pid_offset = 0
        self._tl0_offset = 0
        self._switch_seq = 0
        self._last_out_seq = 0
        self._last_out_ts = 0
        self._last_out_time = 0.0
        self._last_pid = -1
        self._last_tl0 = -1

    @property
    def keyframe_wanted(self) -> int | None:
        """SSRC of the target layer while a switch to it waits for a key frame, else ``None``."""
        if self.wait_for_keyframe and self.target >= 0 and self.target != self.current:
            return self.layer_ssrcs[self.target]
        return None

    def set_target(self, layer: int) -> bool:
        """Aim at ``layer`` (-1: stop forwarding at once). True when a key frame is now needed."""
        if layer >= len(self.layer_ssrcs):
            raise ValueError(f"layer {layer} out of range (source has {len(self.layer_ssrcs)})")
        self.target = layer
        if layer < 0:
            self.current = -1
            return False
        return self.wait_for_keyframe and layer != self.current

    def project(self, packet: bytearray, layer: int, now: float) -> bool:
        """:meth:`accept` and, when accepted, :meth:`rewrite` ``packet`` in place."""
        if not self.accept(packet, layer, now):
            return False
        self.rewrite(packet)
        return True

    def accept(self, packet: bytes | bytearray | memoryview, layer: int, now: float) -> bool:
        """Whether this receiver gets ``packet`` (a decrypted RTP packet of layer ``layer``);
        switches layers at the target's key frame. Does not modify the packet: a forwarder that
        rewrites headers itself uses :attr:`seq_offset`, :attr:`ts_offset` and :attr:`out_ssrc`."""
        if layer != self.current:
            if layer != self.target or not self._switch_here(packet, now):
                return False
        seq = (packet[2] << 8) | packet[3]
        since_switch = (seq - self._switch_seq) & 0xFFFF
        if since_switch >= 0x8000:
            return False  # older than the key frame we switched at
        if since_switch > 0x1000:  # keep the reference near, so it never wraps past us
            self._switch_seq = (seq - 0x1000) & 0xFFFF
        out_seq = (seq + self.seq_offset) & 0xFFFF
        if 0 < ((out_seq - self._last_out_seq) & 0xFFFF) < 0x8000 or not self._started:  # newer
            self._last_out_seq = out_seq
            self._last_out_ts = (int.from_bytes(packet[4:8], "big") + self.ts_offset) & 0xFFFFFFFF
            self._last_out_time = now
        self._started = True
        return True

    def rewrite(self, packet: bytearray) -> None:
        """Rewrite an accepted packet in place: SSRC, sequence number, timestamp, VP8 picture
        id and TL0PICIDX as this receiver sees them."""
        seq = ((packet[2] << 8) | packet[3]) + self.seq_offset
        ts = int.from_bytes(packet[4:8], "big") + self.ts_offset
        packet[2:12] = _SEQ_TS_SSRC.pack(seq & 0xFFFF, ts & 0xFFFFFFFF, self.out_ssrc)
        self._rewrite_vp8(packet)

    def _switch_here(self, packet: bytes | bytearray | memoryview, now: float) -> bool:
        offset, end = rtp_payload_bounds(packet)
        if offset < 0:
            return False
        desc = parse_descriptor(packet, offset, end)
        if self.wait_for_keyframe:
            if desc is None or not desc.start_of_frame or offset + desc.size >= end:
                return False
            if packet[offset + desc.size] & 0x01:  # not a key frame
                return False
        seq = (packet[2] << 8) | packet[3]
        ts = int.from_bytes(packet[4:8], "big")
        if self._started:
            self.seq_offset = (self._last_out_seq + 1 - seq) & 0xFFFF
            elapsed = max(1, round((now - self._last_out_time) * VIDEO_CLOCK_RATE))
            self.ts_offset = (self._last_out_ts + elapsed - ts) & 0xFFFFFFFF
            if desc is not None and desc.picture_id >= 0 and self._last_pid >= 0:
                self._pid_offset = self._last_pid + 1 - desc.picture_id
            if desc is not None and desc.tl0picidx >= 0 and self._last_tl0 >= 0:
                self._tl0_offset = self._last_tl0 + 1 - desc.tl0picidx
        self._switch_seq = seq
        self.current = self.target
        self.switches += 1
        return True

    def _rewrite_vp8(self, packet: bytearray) -> None:
        offset, end = rtp_payload_bounds(packet)
        if offset < 0:
            return
        desc = parse_descriptor(packet, offset, end)
        if desc is None or (desc.picture_id < 0 and desc.tl0picidx < 0):
            return
        mask = 0x7FFF if desc.picture_id_bits == 15 else 0x7F
        pid = (desc.picture_id + self._pid_offset) & mask if desc.picture_id >= 0 else -1
        tl0 = (desc.tl0picidx + self._tl0_offset) & 0xFF if desc.tl0picidx >= 0 else -1
        rewrite_descriptor(packet, offset, desc, pid, tl0)
        if pid >= 0 and (self._last_pid < 0 or ((pid - self._last_pid) & mask) < (mask + 1) // 2):
            self._last_pid = pid
        if tl0 >= 0 and (self._last_tl0 < 0 or ((tl0 - self._last_tl0) & 0xFF) < 0x80):
            self._last_tl0 = tl0
