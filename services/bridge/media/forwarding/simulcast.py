"""SSRC-signalled simulcast: the source model, layer measurements and the per-receiver projection.

* :func:`video_sources` turns what an endpoint sends (``MediaSources``: video SSRCs, ``SIM`` and
  ``FID`` ssrc-groups) into :class:`VideoSource` objects, one per camera/screen, named
  ``<endpoint>-v0``, ``-v1``… with their layers ordered low to high (the order of the SIM group).
* :class:`LayerMeter` measures each layer's bitrate and learns its resolution from VP8 key frames
  (O(1) per packet), so the allocator (``allocation/allocator.py``) knows what each layer costs and shows.
* :class:`SimulcastProjection` is one receiver's view of one source: it forwards one layer at a
  time, switches to the target layer only at a key frame of that layer, and rewrites SSRC,
  sequence number, RTP timestamp and the VP8 picture id / TL0PICIDX so the receiver sees a single
  continuous stream on the source's first SSRC.

No I/O; RTP headers are read and written with ``packets/rtp.py``, VP8 payload descriptors with ``vp8.py``. Retransmissions (RTX) are not projected: the bridge answers NACKs from its own packet
cache with the projected packets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..model import MediaSources
from ..packets import h264, rtp, vp9
from ..packets.vp8 import Vp8Descriptor, keyframe_size, parse_descriptor, rewrite_descriptor
from .layers import LayerSwitch
from .mapping import ForwardingMapping

VIDEO_CLOCK_RATE = 90_000
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
    forward_ssrc: int | None = None
    """The SSRC receivers know the source by when it is not the lowest layer's (RID layers the
    bridge reordered, ``packets/rid.py``)."""
    svc: bool = False
    """VP9 SVC: the layers are the spatial layers of one stream (all on the same SSRC),
    forwarded by ``svc.SvcProjection``."""

    @property
    def primary_ssrc(self) -> int:
        """The SSRC receivers see for this source whatever layer they get (the lowest layer's,
        unless ``forward_ssrc`` says otherwise)."""
        return self.forward_ssrc if self.forward_ssrc is not None else self.layers[0].ssrc

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
        forward = sources.forward_ssrcs.get(ssrcs[0]) if ssrcs else None
        result.append(VideoSource(video_source_name(endpoint, len(result)), endpoint, layers, forward))
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

    __slots__ = ("_heights", "_rates", "_svc_heights", "window")

    def __init__(self, window: float = 0.5) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        self.window = window
        self._rates: dict[int, list[float]] = {}  # ssrc -> [window start, bytes, last rate bps]
        self._heights: dict[int, int] = {}
        self._svc_heights: dict[int, tuple[int, ...]] = {}  # SVC stream SSRC -> spatial layer heights

    @staticmethod
    def svc_key(ssrc: int, sid: int) -> int:
        """The key :meth:`on_packet` measures spatial layer ``sid`` of SVC stream ``ssrc`` under."""
        return ssrc | ((sid + 1) << 32)

    def on_svc_structure(self, ssrc: int, heights: Sequence[int]) -> None:
        """The heights of an SVC stream's spatial layers (from its scalability structure)."""
        self._svc_heights[ssrc] = tuple(heights)

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

    def layer_bitrates(self, source: VideoSource, now: float) -> list[float]:
        """Each layer's bitrate; for SVC what forwarding up to that spatial layer costs (0 for
        a spatial layer not sent, as for a simulcast layer)."""
        if not source.svc:
            return [self.bitrate(ssrc, now) for ssrc in source.ssrcs]
        ssrc, total, out = source.layers[0].ssrc, 0.0, []
        for layer in source.layers:
            own = self.bitrate(self.svc_key(ssrc, layer.index), now)
            total += own
            out.append(total if own > 0 else 0.0)
        return out

    def layer_heights(self, source: VideoSource) -> list[int]:
        """Learned heights where known, the default guess elsewhere."""
        guess = default_layer_heights(len(source.layers))
        if source.svc:
            known = self._svc_heights.get(source.layers[0].ssrc, ())
            return [known[i] if i < len(known) else guess[i] for i in range(len(source.layers))]
        return [self._heights.get(layer.ssrc, guess[layer.index]) for layer in source.layers]

    def forget(self, ssrcs: Sequence[int]) -> None:
        for ssrc in ssrcs:
            self._rates.pop(ssrc, None)
            self._heights.pop(ssrc, None)
            if self._svc_heights.pop(ssrc, None) is not None:
                for sid in range(8):
                    self._rates.pop(self.svc_key(ssrc, sid), None)


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


class ParsedPacket:
    """What the projections need of one packet, read once for all its receivers.

    The VP8 payload descriptor is read on first use of :attr:`vp8` (a layer switch, a picture-id
    rewrite, key-frame detection) and kept: in the steady state nobody needs it. ``packet`` must
    not change while the parse is in use (the forwarder's packets are ``bytes``).
    """

    __slots__ = ("_desc", "_unread", "end", "packet", "payload_offset", "seq", "timestamp")

    def __init__(
        self,
        packet: bytes | bytearray | memoryview,
        seq: int,
        timestamp: int,
        payload_offset: int,
        end: int,
        is_vp8: bool,
    ) -> None:
        self.packet = packet
        self.seq = seq
        """-1 when the packet is malformed."""
        self.timestamp = timestamp
        self.payload_offset = payload_offset
        """-1 when the packet is malformed."""
        self.end = end
        self._desc: Vp8Descriptor | None = None
        self._unread = is_vp8  # the descriptor is still to be read

    @property
    def vp8(self) -> Vp8Descriptor | None:
        """The VP8 payload descriptor; ``None`` for other codecs (picture ids are left alone)."""
        if self._unread:
            self._unread = False
            self._desc = parse_descriptor(self.packet, self.payload_offset, self.end)
        return self._desc

    def vp8_keyframe(self, undeclared: bool = False) -> Vp8Descriptor | None:
        """The VP8 payload descriptor when the packet starts a VP8 key frame, else ``None``.

        Most packets are not the first of a frame: the descriptor's first byte tells (RFC 7741
        section 4.2: S=1 and partition index 0, :attr:`Vp8Descriptor.start_of_frame`) before
        the rest is read, so the others cost one byte read. Then the P bit of the VP8 payload
        header (RFC 6386 section 9.1) says key frame. ``undeclared``: read a stream not declared
        VP8 as VP8 anyway (not kept)."""
        offset, end, packet = self.payload_offset, self.end, self.packet
        if offset < 0 or offset >= end or packet[offset] & 0x17 != 0x10:  # S=1, PID=0 (R ignored)
            return None
        desc = self.vp8
        if desc is None and undeclared:
            desc = parse_descriptor(packet, offset, end)
        if desc is None or offset + desc.size >= end or packet[offset + desc.size] & 0x01:
            return None
        return desc

    @property
    def vp9(self) -> vp9.Vp9Descriptor | None:
        """The VP9 payload descriptor (``packets/vp9.py``), read at each use: a
        :class:`Vp9Packet` (:func:`parse_vp9_packet`) reads it once for all receivers."""
        return vp9.parse_descriptor(self.packet, self.payload_offset, self.end)

    h264 = False
    """An H.264 packet (:func:`parse_h264_packet`): key frames are found by ``packets/h264.py``."""


class H264Packet(ParsedPacket):
    """A parsed H.264 packet (no VP8 descriptor)."""

    __slots__ = ()
    h264 = True


class Vp9Packet(ParsedPacket):
    """A parsed VP9 packet (no VP8 descriptor): its VP9 descriptor is read on first use and kept."""

    __slots__ = ("_vp9", "_vp9_unread")

    def __init__(
        self, packet: bytes | bytearray | memoryview, seq: int, timestamp: int, payload_offset: int, end: int
    ) -> None:
        super().__init__(packet, seq, timestamp, payload_offset, end, False)
        self._vp9: vp9.Vp9Descriptor | None = None
        self._vp9_unread = True

    @property
    def vp9(self) -> vp9.Vp9Descriptor | None:
        if self._vp9_unread:
            self._vp9_unread = False
            self._vp9 = vp9.parse_descriptor(self.packet, self.payload_offset, self.end)
        return self._vp9


_MALFORMED = ParsedPacket(b"", -1, 0, -1, -1, False)


def parse_h264_packet(packet: bytes | bytearray | memoryview) -> ParsedPacket:
    """:func:`parse_packet` of an H.264 packet."""
    offset, end = rtp.payload_bounds(packet)
    if offset < 0:
        return _MALFORMED
    seq, timestamp = rtp.sequence_number_and_timestamp(packet)
    return H264Packet(packet, seq, timestamp, offset, end, False)


def parse_vp9_packet(packet: bytes | bytearray | memoryview) -> ParsedPacket:
    """:func:`parse_packet` of a VP9 packet (a :class:`Vp9Packet`, unless malformed)."""
    offset, end = rtp.payload_bounds(packet)
    if offset < 0:
        return _MALFORMED
    seq, timestamp = rtp.sequence_number_and_timestamp(packet)
    return Vp9Packet(packet, seq, timestamp, offset, end)


def parse_packet(packet: bytes | bytearray | memoryview, vp8: bool = True) -> ParsedPacket:
    """Sequence number, timestamp, payload bounds and (``vp8``, on first use) the VP8 payload
    descriptor of ``packet``, which must not change while the result is in use."""
    offset, end = rtp.payload_bounds(packet)
    if offset < 0:
        return _MALFORMED
    seq, timestamp = rtp.sequence_number_and_timestamp(packet)
    return ParsedPacket(packet, seq, timestamp, offset, end, vp8)


class SimulcastProjection(LayerSwitch):
    """What one receiver gets of one video source: one layer, rewritten to look continuous.

    ``target`` is set by the allocator (``-1`` = forward nothing; :class:`~.layers.LayerSwitch`
    keeps target and current layer). A switch to the target layer, up or down, happens on the
    first key frame of that layer; until then the current layer keeps flowing (or nothing, at the
    start). :attr:`keyframe_wanted` names the SSRC the bridge should send a PLI to while a switch
    waits.

    Two ways to use it, same decisions:

    * :meth:`project` takes a packet, decides and rewrites it in place;
    * the forwarder's way, which parses each packet once for all its receivers: :meth:`accept`
      with the packet's :func:`parse_packet` decides; the receiver's subscription forwards it
      under :attr:`mapping` (SSRC, offsets and, while :attr:`rewrites_payload`,
      :meth:`rewrite_payload` on its copy of the packet just accepted).

    The projection is the one owner of that mapping: it makes a new
    :class:`~.mapping.ForwardingMapping` at every switch, and the subscription of the layer it
    now forwards points at it (``Subscription.follow``).

    Picture ids (7 or 15 bits) and TL0PICIDX continue from the last ones the receiver got, +1, at
    every switch, as sequence numbers and timestamps do; the offsets then hold until the next one.
    """

    __slots__ = (
        "_last_out_time",
        "_newest",
        "_next_seq",
        "_parsed",
        "_pid_offset",
        "_seq_offset",
        "_switch_seq",
        "_switch_seq_due",
        "_tl0_offset",
        "_ts_offset",
    )

    def __init__(self, source: VideoSource, wait_for_keyframe: bool | None = None) -> None:
        """``wait_for_keyframe``: start and switch only at key frames (default: when the source
        has more than one layer; a single-layer stream starts at once and its receiver asks for
        a key frame itself)."""
        super().__init__(
            source,
            len(source.layers) > 1 if wait_for_keyframe is None else wait_for_keyframe,
            ForwardingMapping(source.primary_ssrc),
        )
        self._seq_offset = 0
        self._ts_offset = 0
        self._pid_offset = 0
        self._tl0_offset = 0
        # packets older than this one (the key frame switched at) are not forwarded; it is kept
        # at most 0x1000 behind the newest packet sent so that it never wraps past us, moved
        # when a packet takes the long path in :meth:`accept`, or at ``_switch_seq_due``
        self._switch_seq = 0
        self._switch_seq_due = -1
        self._newest: ParsedPacket | None = None  # the newest packet sent (None: nothing yet)
        self._last_out_time = 0.0  # when it was sent
        # the sequence number after it, on the layer the offsets apply to (the receiver saw it
        # as ``_next_seq - 1 + _seq_offset``)
        self._next_seq: int | None = None
        self._parsed: ParsedPacket | None = None  # the packet accepted last

    def project(self, packet: bytearray, layer: int, now: float) -> bool:
        """:meth:`accept` and, when accepted, :meth:`rewrite` ``packet`` (a VP8 RTP packet) in place."""
        if not self.accept(packet, layer, now, parse_packet(bytes(packet))):
            return False
        self.rewrite(packet)
        return True

    def accept(
        self,
        packet: bytes | bytearray | memoryview,
        layer: int,
        now: float,
        parsed: ParsedPacket | None = None,
    ) -> bool:
        """Whether this receiver gets ``packet`` (a decrypted RTP packet of layer ``layer``);
        switches layers at the target's key frame. ``parsed`` is :func:`parse_packet` of it
        (read here when not given). Does not modify the packet."""
        if parsed is None:
            parsed = parse_packet(bytes(packet))
        seq = parsed.seq
        if seq == self._next_seq and layer == self.current:
            # the steady state, the packet after the newest one sent on the same layer: it
            # passes every check below, only the bookkeeping is left
            if seq == self._switch_seq_due:
                self._keep_switch_seq_near(seq)
            self._next_seq = (seq + 1) & 0xFFFF
            self._newest = self._parsed = parsed
            self._last_out_time = now
            return True
        if parsed.payload_offset < 0:
            return False  # malformed
        if layer != self.current:
            if layer != self.target or not self._switch_here(packet, parsed, now):
                return False
        next_seq = self._next_seq  # None until the first packet
        if next_seq is not None:
            self._keep_switch_seq_near((next_seq - 1) & 0xFFFF)  # as of the newest packet sent
        since_switch = (seq - self._switch_seq) & 0xFFFF
        if since_switch >= 0x8000:
            return False  # older than the key frame we switched at
        if next_seq is None or 0 < ((seq + 1 - next_seq) & 0xFFFF) < 0x8000:  # newer
            self._newest = parsed
            self._last_out_time = now
            self._next_seq = (seq + 1) & 0xFFFF
            self._keep_switch_seq_near(seq)
        self._parsed = parsed
        return True

    def _keep_switch_seq_near(self, newest_seq: int) -> None:
        """Move the switch reference up to 0x1000 behind ``newest_seq`` when it is further back
        (called for every newest packet that takes the long path in :meth:`accept`, and by
        the short one when the sequence number reaches ``_switch_seq_due``: in between, the
        newest packet stays less than 0x4000 ahead, never so far that the distance is ambiguous)."""
        if (newest_seq - self._switch_seq) & 0xFFFF > 0x1000:
            self._switch_seq = (newest_seq - 0x1000) & 0xFFFF
        self._switch_seq_due = (self._switch_seq + 0x4000) & 0xFFFF

    def rewrite(self, packet: bytearray) -> None:
        """Rewrite the packet just accepted in place: SSRC, sequence number, timestamp, VP8
        picture id and TL0PICIDX as this receiver sees them."""
        rtp.rewrite_in_place(
            packet,
            rtp.sequence_number(packet) + self._seq_offset,
            rtp.timestamp(packet) + self._ts_offset,
            self.out_ssrc,
        )
        self.rewrite_payload(packet)

    @property
    def seq_offset(self) -> int:
        """Added (mod 2^16) to the sequence numbers of the current layer."""
        return self._seq_offset

    @property
    def ts_offset(self) -> int:
        """Added (mod 2^32) to the RTP timestamps of the current layer."""
        return self._ts_offset

    @property
    def rewrites_payload(self) -> bool:
        """Whether picture ids or TL0PICIDX change on the way (after a switch, nearly always)."""
        return self._pid_offset != 0 or self._tl0_offset != 0

    def rewrite_payload(self, packet: bytearray) -> None:
        """Rewrite the VP8 picture id and TL0PICIDX in place in ``packet``, whose RTP header is
        already rewritten: normally a copy of the packet :meth:`accept` took last, whose
        descriptor it has; any other packet of the current layer (a retransmission) has its
        own descriptor read."""
        if self._pid_offset == 0 and self._tl0_offset == 0:
            return
        parsed = self._parsed
        if parsed is None or rtp.sequence_number(packet) != (parsed.seq + self._seq_offset) & 0xFFFF:
            parsed = parse_packet(packet)
        desc = parsed.vp8
        if desc is None:
            return
        pid = desc.picture_id
        if pid >= 0:
            pid = (pid + self._pid_offset) & (0x7FFF if desc.picture_id_bits == 15 else 0x7F)
        tl0 = desc.tl0picidx
        if tl0 >= 0:
            tl0 = (tl0 + self._tl0_offset) & 0xFF
        rewrite_descriptor(packet, parsed.payload_offset, desc, pid, tl0)

    def _switch_here(self, packet: bytes | bytearray | memoryview, parsed: ParsedPacket, now: float) -> bool:
        desc = None
        if self.wait_for_keyframe and parsed.h264:
            if not h264.is_keyframe(packet, parsed.payload_offset, parsed.end):
                return False
        elif self.wait_for_keyframe:
            desc = parsed.vp8_keyframe(undeclared=True)  # a stream not declared VP8: look anyway
            if desc is None:
                return False
        newest, next_seq = self._newest, self._next_seq
        if newest is not None and next_seq is not None:
            # continue from the newest packet the receiver got, as it saw it (the offsets
            # have not changed since it was sent: they change only here)
            self._seq_offset = (next_seq + self._seq_offset - parsed.seq) & 0xFFFF
            self._next_seq = parsed.seq  # on the new layer, with the new offset
            elapsed = max(1, round((now - self._last_out_time) * VIDEO_CLOCK_RATE))
            last_out_ts = newest.timestamp + self._ts_offset
            self._ts_offset = (last_out_ts + elapsed - parsed.timestamp) & 0xFFFFFFFF
            if not self.wait_for_keyframe:
                desc = parsed.vp8
            last = newest.vp8
            if desc is not None and last is not None:
                # continue from the last picture id / TL0PICIDX the receiver got, as it saw them
                if desc.picture_id >= 0 and last.picture_id >= 0:
                    mask = 0x7FFF if last.picture_id_bits == 15 else 0x7F
                    last_pid = (last.picture_id + self._pid_offset) & mask
                    self._pid_offset = last_pid + 1 - desc.picture_id
                if desc.tl0picidx >= 0 and last.tl0picidx >= 0:
                    last_tl0 = (last.tl0picidx + self._tl0_offset) & 0xFF
                    self._tl0_offset = last_tl0 + 1 - desc.tl0picidx
        self._switch_seq = parsed.seq
        self._switch_seq_due = (parsed.seq + 0x4000) & 0xFFFF
        self.switched(self.target)
        self.mapping = ForwardingMapping(
            self.layer_ssrcs[self.current],
            self.out_ssrc,
            self._seq_offset,
            self._ts_offset,
            self.rewrite_payload if self.rewrites_payload else None,
        )
        return True
