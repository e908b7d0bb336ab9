"""VP9 SVC: one receiver's view of a source that sends its spatial and temporal layers in one
RTP stream (RFC 9628; Chrome's ``scalabilityMode`` ``L3T3_KEY``), cf. jitsi-videobridge's
``Vp9AdaptiveSourceProjectionContext``.

:class:`SvcProjection` stands where a :class:`~.simulcast.SimulcastProjection` stands for a
simulcast source: the allocator picks a layer index per receiver (here the spatial layer, SID,
whose heights come from the scalability structure), and the projection forwards the layer frames
of that picture up to it, every temporal layer up to :attr:`SvcProjection.target_tid`:

* a layer frame above the target is dropped; the sequence numbers the receiver sees stay gapless
  (each dropped packet shifts the later ones down by one: a new
  :class:`~.mapping.ForwardingMapping` whenever the shift changes);
* the RTP marker is set on the last packet (E bit) of the target spatial layer of each picture,
  which is where the receiver's picture ends (RFC 9628 section 4.1);
* switching up to a higher spatial layer waits for a key picture (``L3T3_KEY``: the upper layers
  depend on the lower ones only there) or a frame of the next layer up that is not predicted
  from an earlier picture (P=0), only from the layer below; a higher temporal layer is taken at a switching-up point
  (U bit) or a base-layer picture; switching down happens at the next picture boundary.

The SSRC, RTP timestamps and picture ids are not rewritten: it is the same stream throughout.
A packet older than the newest one forwarded is forwarded only if no packet was dropped since
(its place in the receiver's numbering is then known), e.g. a retransmission from the sender.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..packets import rtp
from ..packets.vp9 import Vp9Descriptor
from .layers import LayerSwitch
from .mapping import ForwardingMapping
from .simulcast import parse_vp9_packet

if TYPE_CHECKING:
    from .simulcast import ParsedPacket, VideoSource

ALL_TEMPORAL = 7


class SvcProjection(LayerSwitch):
    """What one receiver gets of one VP9 SVC source: spatial layers up to :attr:`current`.

    A :class:`~.layers.LayerSwitch` as :class:`~.simulcast.SimulcastProjection` is (``target``,
    ``current``, ``set_target``, ``accept``, ``mapping``, ``keyframe_wanted``); only a switch up
    waits for a key picture. The layer argument of :meth:`accept` is ignored: the layer is in
    each packet's descriptor."""

    __slots__ = (
        "_delta",
        "_last_drop_seq",
        "_mapping_marked",
        "_newest_seq",
        "current_tid",
        "target_tid",
    )

    waits_on_down = False

    def __init__(self, source: VideoSource, wait_for_keyframe: bool | None = None) -> None:
        super().__init__(
            source,
            True if wait_for_keyframe is None else wait_for_keyframe,
            ForwardingMapping(source.layers[0].ssrc, source.primary_ssrc),
        )
        self.target_tid = ALL_TEMPORAL
        self.current_tid = ALL_TEMPORAL
        self._delta = 0
        self._newest_seq: int | None = None
        self._last_drop_seq: int | None = None
        self._mapping_marked = False

    def set_target(self, layer: int, tid: int = ALL_TEMPORAL) -> bool:
        """Aim at spatial layer ``layer`` (-1: stop at once) and temporal layers up to ``tid``.
        True when a key picture is now needed (a switch up)."""
        wanted = super().set_target(layer)
        self.target_tid = tid
        return wanted

    def accept(
        self,
        packet: bytes | bytearray | memoryview,
        layer: int,
        now: float,
        parsed: ParsedPacket | None = None,
    ) -> bool:
        """Whether this receiver gets ``packet``; when it does, :attr:`mapping` is what it is
        forwarded under. Does not modify the packet."""
        if parsed is None:
            parsed = parse_vp9_packet(bytes(packet))
        if parsed.payload_offset < 0:
            return False
        desc = parsed.vp9  # a Vp9Packet's: read once for all receivers
        seq = parsed.seq
        newest = self._newest_seq
        newer = newest is None or 0 < ((seq - newest) & 0xFFFF) < 0x8000
        if not newer:
            # reordered or retransmitted: its place is known only if nothing was dropped since
            drop = self._last_drop_seq
            if self.current < 0 or desc is None or (drop is not None and ((seq - drop) & 0xFFFF) >= 0x8000):
                return False
            return desc.layer <= self.current and desc.temporal <= self.current_tid and self._use(desc, packet)
        if desc is not None and desc.start_of_layer_frame:
            if desc.sid <= 0:
                self._picture_boundary(desc)
            elif 0 <= self.current == desc.sid - 1 < self.target and not desc.inter_picture:
                # a layer frame predicted only from the layer below, which the receiver has in
                # this picture: a switching point to that layer (full SVC modes, L3T3)
                self.switched(desc.sid)
        forward = (
            self.current >= 0
            and desc is not None
            and desc.layer <= self.current
            and desc.temporal <= self.current_tid
        )
        self._newest_seq = seq
        if not forward:
            # a dropped packet leaves the receiver's numbering (one lost upstream keeps its
            # number: the receiver asks for it)
            self._delta = (self._delta - 1) & 0xFFFF
            self._last_drop_seq = seq
            return False
        assert desc is not None
        return self._use(desc, packet)

    def _use(self, desc: Vp9Descriptor, packet: bytes | bytearray | memoryview) -> bool:
        # the end of the receiver's picture: the last packet of its top layer frame
        marked = desc.end_of_layer_frame and desc.layer == self.current and not rtp.has_marker(packet)
        mapping = self.mapping
        if mapping.seq_delta != self._delta or marked != self._mapping_marked:
            self.mapping = ForwardingMapping(
                mapping.source_ssrc, self.out_ssrc, self._delta, 0, rtp.set_marker if marked else None
            )
            self._mapping_marked = marked
        return True

    def _picture_boundary(self, desc: Vp9Descriptor) -> None:
        """The first packet of a new picture: the place for layer switches."""
        target = self.target
        if target < 0:
            self.current = -1
            return
        key = desc.starts_key_picture
        if target != self.current:
            if target < self.current or key or (not self.wait_for_keyframe and self.current >= 0):
                self.switched(target)
                if key:
                    self.current_tid = self.target_tid
            elif self.current < 0 and not self.wait_for_keyframe:
                self.switched(target)
        if self.target_tid != self.current_tid and self.current >= 0:
            if self.target_tid < self.current_tid or desc.temporal == 0 or key or desc.switching_up:
                self.current_tid = self.target_tid
