"""One receiver's layer of one video source: the target the allocator sets, the layer it gets,
and when a switch must wait for a key frame. No I/O.

:class:`LayerSwitch` is what a simulcast projection (``simulcast.py``, one SSRC per layer) and a
VP9 SVC projection (``svc.py``, the spatial layers of one stream) share: the allocator
(``allocation/video_policy.py``) calls :meth:`LayerSwitch.set_target`; the projection decides
per packet where the switch happens (a key frame of the target layer, a picture boundary) and
records it with :meth:`LayerSwitch.switched`; :attr:`LayerSwitch.keyframe_wanted` names the SSRC
the bridge asks for a key frame (RFC 4585 PLI) while a switch waits; :attr:`LayerSwitch.mapping`
is the :class:`~.mapping.ForwardingMapping` the receiver's subscription follows, replaced (never
changed) by the projection. Nothing here runs per packet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .mapping import ForwardingMapping

if TYPE_CHECKING:
    from .simulcast import ParsedPacket, VideoSource


class LayerSwitch:
    """The target and current layer of one receiver's view of one source (``-1``: none).

    :attr:`waits_on_down` says whether a switch to a lower layer waits for a key frame too
    (simulcast: another stream starts, yes; SVC: the lower layers are in every picture, no)."""

    __slots__ = ("current", "layer_ssrcs", "mapping", "out_ssrc", "switches", "target", "wait_for_keyframe")

    waits_on_down = True

    def __init__(self, source: VideoSource, wait_for_keyframe: bool, mapping: ForwardingMapping) -> None:
        self.wait_for_keyframe = wait_for_keyframe
        """Start and switch up (and down, with :attr:`waits_on_down`) only at key frames."""
        self.out_ssrc = source.primary_ssrc
        self.layer_ssrcs = source.ssrcs
        self.mapping = mapping
        """What the receiver sees of the layer it gets; replaced (never changed) by the projection."""
        self.target = -1
        self.current = -1
        self.switches = 0

    @property
    def keyframe_wanted(self) -> int | None:
        """SSRC of the target layer while a switch to it waits for a key frame, else ``None``."""
        target, current = self.target, self.current
        if target < 0 or target == current or not self.wait_for_keyframe:
            return None
        if target > current or self.waits_on_down:
            return self.layer_ssrcs[target]
        return None

    def set_target(self, layer: int) -> bool:
        """Aim at ``layer`` (-1: stop forwarding at once). True when a key frame is now needed
        (a switch that waits for one, as :attr:`keyframe_wanted` then says)."""
        if layer >= len(self.layer_ssrcs):
            raise ValueError(f"layer {layer} out of range (source has {len(self.layer_ssrcs)})")
        self.target = layer
        if layer < 0:
            self.current = -1
            return False
        return self.wait_for_keyframe and layer != self.current and (layer > self.current or self.waits_on_down)

    def switched(self, layer: int) -> None:
        """The receiver gets ``layer`` from the packet being accepted on."""
        self.current = layer
        self.switches += 1

    def accept(
        self,
        packet: bytes | bytearray | memoryview,
        layer: int,
        now: float,
        parsed: ParsedPacket | None = None,
    ) -> bool:
        """Whether this receiver gets ``packet`` (of layer ``layer``); when it does,
        :attr:`mapping` is what it is forwarded under. Does not modify the packet."""
        raise NotImplementedError
