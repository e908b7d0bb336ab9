"""Bridge-channel messages (Colibri WebSocket / SCTP data channel), docs/protocols.md#bridge-channel.

JSON objects tagged by ``colibriClass`` as jitsi-videobridge's ``BridgeChannelMessage.kt`` and
lib-jitsi-meet's ``BridgeChannel`` exchange them. Each class is a pydantic model; :func:`parse`
turns text (or decoded JSON) into the right model and raises :class:`BridgeChannelError` naming the
field on bad input; :func:`serialize` renders a model as compact JSON text.

Fields are camelCase on the wire (``msgPayload``, ``lastN``) and snake_case in Python. Unknown
extra fields are kept (clients add their own, e.g. inside endpoint messages) and written back out.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel


class BridgeChannelError(ValueError):
    """Bad bridge-channel input. ``field`` names the first problem ('' when the JSON itself is bad)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class BridgeChannelMessage(BaseModel):
    """Base of every message: camelCase aliases, extra fields preserved."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class ServerHello(BridgeChannelMessage):
    """Bridge -> client when the channel opens (or in reply to ClientHello)."""

    colibri_class: Literal["ServerHello"] = "ServerHello"
    version: str | None = None


class ClientHello(BridgeChannelMessage):
    """Client -> bridge; the bridge answers with ServerHello."""

    colibri_class: Literal["ClientHello"] = "ClientHello"


class EndpointMessage(BridgeChannelMessage):
    """Endpoint-to-endpoint message relayed by the bridge; ``to == ""`` means everyone else.

    The bridge sets ``from`` (``from_endpoint`` here) to the sender's endpoint id before relaying.
    """

    colibri_class: Literal["EndpointMessage"] = "EndpointMessage"
    to: str = ""
    msg_payload: Any = None
    from_endpoint: str | None = Field(default=None, alias="from")

    @property
    def is_broadcast(self) -> bool:
        return self.to == ""


class EndpointStats(BridgeChannelMessage):
    """Free-form statistics an endpoint shares with everyone; the bridge adds ``from``."""

    colibri_class: Literal["EndpointStats"] = "EndpointStats"
    to: str | None = None
    from_endpoint: str | None = Field(default=None, alias="from")


class LastNChangedEvent(BridgeChannelMessage):
    """Client -> bridge: forward at most ``last_n`` video streams (-1 = unlimited)."""

    colibri_class: Literal["LastNChangedEvent"] = "LastNChangedEvent"
    last_n: int = Field(ge=-1)


class VideoConstraints(BridgeChannelMessage):
    """``{"maxHeight": 180, "maxFrameRate": 15}``; -1 / absent = no limit."""

    max_height: int | None = Field(default=None, ge=-1)
    max_frame_rate: float | None = Field(default=None, ge=-1)


class ReceiverVideoConstraints(BridgeChannelMessage):
    """Client -> bridge: what video this receiver wants. Absent fields leave the previous value."""

    colibri_class: Literal["ReceiverVideoConstraints"] = "ReceiverVideoConstraints"
    last_n: int | None = Field(default=None, ge=-1)
    selected_sources: list[str] | None = None
    on_stage_sources: list[str] | None = None
    default_constraints: VideoConstraints | None = None
    constraints: dict[str, VideoConstraints] | None = None


class SourceVideoTypeMessage(BridgeChannelMessage):
    """Client -> bridge: the kind of video a source carries."""

    colibri_class: Literal["SourceVideoTypeMessage"] = "SourceVideoTypeMessage"
    source_name: str
    video_type: Literal["camera", "desktop", "desktop_high_fps", "none"]


class ReceiverAudioSubscription(BridgeChannelMessage):
    """Client -> bridge: which audio sources to receive (all, or an include/exclude list)."""

    colibri_class: Literal["ReceiverAudioSubscription"] = "ReceiverAudioSubscription"
    all: bool | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None


class DominantSpeakerEndpointChangeEvent(BridgeChannelMessage):
    """Bridge -> client: the dominant speaker changed."""

    colibri_class: Literal["DominantSpeakerEndpointChangeEvent"] = "DominantSpeakerEndpointChangeEvent"
    dominant_speaker_endpoint: str
    previous_speakers: list[str] = Field(default_factory=list)
    silence: bool = False


class EndpointConnectivityStatusChangeEvent(BridgeChannelMessage):
    """Bridge -> client: an endpoint's media went (in)active. ``active`` is "true"/"false" text."""

    colibri_class: Literal["EndpointConnectivityStatusChangeEvent"] = "EndpointConnectivityStatusChangeEvent"
    endpoint: str
    active: Literal["true", "false"]


class ForwardedSources(BridgeChannelMessage):
    """Bridge -> client: the video sources now forwarded to it (names like ``<endpoint>-v0``)."""

    colibri_class: Literal["ForwardedSources"] = "ForwardedSources"
    forwarded_sources: list[str] = Field(default_factory=list)


class SenderSourceConstraints(BridgeChannelMessage):
    """Bridge -> client: nobody needs more than ``max_height`` of this source."""

    colibri_class: Literal["SenderSourceConstraints"] = "SenderSourceConstraints"
    source_name: str
    max_height: int = Field(ge=-1)


class ConnectionStats(BridgeChannelMessage):
    """Bridge -> client: the bridge's estimate of the client's downlink (bps)."""

    colibri_class: Literal["ConnectionStats"] = "ConnectionStats"
    estimated_downlink_bandwidth: int = Field(ge=0)


AnyMessage = Annotated[
    ServerHello
    | ClientHello
    | EndpointMessage
    | EndpointStats
    | LastNChangedEvent
    | ReceiverVideoConstraints
    | SourceVideoTypeMessage
    | ReceiverAudioSubscription
    | DominantSpeakerEndpointChangeEvent
    | EndpointConnectivityStatusChangeEvent
    | ForwardedSources
    | SenderSourceConstraints
    | ConnectionStats,
    Field(discriminator="colibri_class"),
]

MESSAGE_CLASSES: dict[str, type[BridgeChannelMessage]] = {
    cls.model_fields["colibri_class"].default: cls
    for cls in (
        ServerHello,
        ClientHello,
        EndpointMessage,
        EndpointStats,
        LastNChangedEvent,
        ReceiverVideoConstraints,
        SourceVideoTypeMessage,
        ReceiverAudioSubscription,
        DominantSpeakerEndpointChangeEvent,
        EndpointConnectivityStatusChangeEvent,
        ForwardedSources,
        SenderSourceConstraints,
        ConnectionStats,
    )
}

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyMessage)


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in MESSAGE_CLASSES]
    return ".".join(parts)


def parse(data: str | bytes | dict[str, Any]) -> BridgeChannelMessage:
    """Text, bytes or a decoded JSON object -> the message model for its ``colibriClass``."""
    if isinstance(data, bytes | str):
        try:
            obj = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BridgeChannelError("", f"malformed JSON: {exc}") from exc
    else:
        obj = data
    if not isinstance(obj, dict):
        raise BridgeChannelError("", f"expected a JSON object, got {type(obj).__name__}")
    cls = obj.get("colibriClass")
    if cls is None:
        raise BridgeChannelError("colibriClass", "missing")
    if not isinstance(cls, str) or cls not in MESSAGE_CLASSES:
        raise BridgeChannelError("colibriClass", f"unknown message class {cls!r}")
    try:
        message: BridgeChannelMessage = _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BridgeChannelError(_loc(first["loc"]) or "colibriClass", first["msg"]) from exc
    return message


def to_dict(message: BridgeChannelMessage) -> dict[str, Any]:
    """The wire object: camelCase keys, ``colibriClass`` first, ``None`` fields left out."""
    out = message.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {"colibriClass": out.pop("colibriClass"), **out}


def serialize(message: BridgeChannelMessage) -> str:
    """Compact JSON text for one message."""
    return json.dumps(to_dict(message), separators=(",", ":"))
