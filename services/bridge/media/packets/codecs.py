"""Which codec a payload type carries, from the payload types an endpoint negotiated (its
``a=rtpmap`` names; the focus offers Jicofo's numbering, but a client's answer decides)."""

from __future__ import annotations

from collections.abc import Iterable

from ..model import PayloadType

VP8 = "vp8"
VP9 = "vp9"
H264 = "h264"
AV1 = "av1"
OPUS = "opus"
RED = "red"
RTX = "rtx"


class CodecMap:
    """Payload type -> lower-case codec name of one endpoint's negotiated payload types."""

    __slots__ = ("names",)

    def __init__(self, payload_types: Iterable[PayloadType] = ()) -> None:
        self.names: dict[int, str] = {pt.id: pt.name.lower() for pt in payload_types if 0 <= pt.id <= 127}

    def codec(self, payload_type: int) -> str | None:
        return self.names.get(payload_type)

    def payload_types_of(self, codec: str) -> frozenset[int]:
        return frozenset(pt for pt, name in self.names.items() if name == codec)

    def has(self, codec: str) -> bool:
        return codec in self.names.values()
