"""VP9 RTP payload descriptor (RFC 9628, formerly draft-ietf-payload-vp9, section 4.2), read only.

What the SVC projection (``forwarding/svc.py``) needs of a packet: which picture, spatial layer
(SID) and temporal layer (TID) it carries, whether it starts/ends that layer frame, whether it can
be decoded without earlier pictures, and the scalability structure (SS) with each spatial layer's
resolution::

     0 1 2 3 4 5 6 7
    +-+-+-+-+-+-+-+-+
    |I|P|L|F|B|E|V|Z|   required
    +-+-+-+-+-+-+-+-+
    |M| PICTURE ID  |   if I (M=1: 15 bits over two bytes)
    +-+-+-+-+-+-+-+-+
    |TID|U| SID |D  |   if L (TID 3 bits, U, SID 3 bits, D)
    |   TL0PICIDX   |   if L and not F (non-flexible mode)
    +-+-+-+-+-+-+-+-+
    | P_DIFF      |N|   if F and P, up to 3 times
    +-+-+-+-+-+-+-+-+
    |      SS       |   if V
    +-+-+-+-+-+-+-+-+

Every length is checked against the payload's end: truncated or inconsistent input gives
``None``, never an exception; the SS is bounded by its own fields (at most 8 spatial layers, 255
picture groups of at most 3 references each).
"""

from __future__ import annotations

from typing import NamedTuple

from .picture_id import read_picture_id


class Vp9Descriptor(NamedTuple):
    """The fields of one packet's VP9 payload descriptor (-1 where absent)."""

    size: int
    """Descriptor length in bytes (with the SS); the VP9 payload starts after it."""
    inter_picture: bool
    """P: the frame references an earlier picture (False on a key picture's layer frames)."""
    flexible: bool
    start_of_layer_frame: bool
    """B: the first packet of this spatial layer's frame."""
    end_of_layer_frame: bool
    """E: the last packet of this spatial layer's frame."""
    not_reference: bool
    """Z: no higher spatial layer of this picture uses this frame."""
    picture_id: int
    picture_id_bits: int
    tid: int
    switching_up: bool
    """U: a switching-up point to ``tid`` (RFC 9628 4.2)."""
    sid: int
    inter_layer: bool
    """D: the frame depends on the spatial layer below in the same picture."""
    tl0picidx: int
    resolutions: tuple[tuple[int, int], ...]
    """(width, height) of each spatial layer from the SS when it carries them (Y), else ()."""
    spatial_layers: int
    """Number of spatial layers the SS announces; 0 without an SS."""

    @property
    def layer(self) -> int:
        """The spatial layer, 0 when the descriptor has no layer indices."""
        return max(self.sid, 0)

    @property
    def temporal(self) -> int:
        return max(self.tid, 0)

    @property
    def starts_key_picture(self) -> bool:
        """The first packet of a picture decodable without any earlier one (a key picture)."""
        return self.start_of_layer_frame and not self.inter_picture and self.sid <= 0


def parse_descriptor(buf: bytes | bytearray | memoryview, offset: int, end: int) -> Vp9Descriptor | None:
    """The descriptor at ``buf[offset:end]`` (the RTP payload), or ``None`` when malformed."""
    if offset < 0 or end > len(buf) or offset >= end:
        return None
    first = buf[offset]
    i = offset + 1
    p_bit = bool(first & 0x40)
    flexible = bool(first & 0x10)
    picture_id = -1
    pid_bits = 0
    if first & 0x80:  # I
        pid = read_picture_id(buf, i, end)
        if pid is None:
            return None
        picture_id, pid_bits, i = pid
    tid = sid = tl0 = -1
    switching_up = inter_layer = False
    if first & 0x20:  # L
        if i >= end:
            return None
        layer = buf[i]
        tid, switching_up, sid, inter_layer = layer >> 5, bool(layer & 0x10), (layer >> 1) & 0x07, bool(layer & 1)
        i += 1
        if not flexible:
            if i >= end:
                return None
            tl0 = buf[i]
            i += 1
    if flexible and p_bit:  # reference indices, each with N (another follows)
        for _ in range(3):
            if i >= end:
                return None
            more = buf[i] & 0x01
            i += 1
            if not more:
                break
        else:
            if more:
                return None  # a fourth reference: not allowed
    resolutions: tuple[tuple[int, int], ...] = ()
    n_spatial = 0
    if first & 0x02:  # V: scalability structure
        if i >= end:
            return None
        ss = buf[i]
        i += 1
        n_spatial = (ss >> 5) + 1
        if ss & 0x10:  # Y
            if i + 4 * n_spatial > end:
                return None
            resolutions = tuple(
                (
                    (buf[i + 4 * k] << 8) | buf[i + 4 * k + 1],
                    (buf[i + 4 * k + 2] << 8) | buf[i + 4 * k + 3],
                )
                for k in range(n_spatial)
            )
            i += 4 * n_spatial
        if ss & 0x08:  # G: picture group description
            if i >= end:
                return None
            groups = buf[i]
            i += 1
            for _ in range(groups):
                if i >= end:
                    return None
                refs = (buf[i] >> 2) & 0x03
                i += 1 + refs
                if i > end:
                    return None
    if i > end:
        return None
    return Vp9Descriptor(
        i - offset,
        p_bit,
        flexible,
        bool(first & 0x08),
        bool(first & 0x04),
        bool(first & 0x01),
        picture_id,
        pid_bits,
        tid,
        switching_up,
        sid,
        inter_layer,
        tl0,
        resolutions,
        n_spatial,
    )
