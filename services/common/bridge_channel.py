"""Bridge-channel messages (Colibri WebSocket / SCTP data channel), docs/protocols.md#bridge-channel.

JSON objects tagged by ``colibriClass`` as jitsi-videobridge's ``BridgeChannelMessage.kt`` and
lib-jitsi-meet's ``BridgeChannel`` exchange them. Each class is a pydantic model; :func:`parse`
turns text (or decoded JSON) into the right model and raises :class:`BridgeChannelError` naming the
field on bad input; :func:`serialize` renders a model as compact JSON text.

Fields are camelCase on the wire (``msgPayload``, ``lastN``) and snake_case in Python. Unknown
extra fields are kept (clients add their own, e.g. inside endpoint messages) and written back out.

Every message comes from a client, so :func:`parse` bounds what it costs before decoding: at most
``max_bytes`` (:data:`MAX_MESSAGE_BYTES`) of text and ``max_depth`` (:data:`MAX_DEPTH`) nested
arrays/objects; deeper JSON would otherwise reach Python's recursion limit in the decoder or the
validator. :class:`BridgeChannelError` is the only exception it raises.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest bridge-channel message accepted (chat and endpoint stats are a few hundred bytes)."""
MAX_DEPTH = 32
"""Deepest nesting of JSON arrays/objects accepted (the deepest message class needs 4)."""


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


class Error(BridgeChannelMessage):
    """Bridge -> client: the client's last message was refused (``field`` names the problem,
    '' when the message as a whole was; ``reason`` says why). Sent at most once a second per
    endpoint; clients that do not know it ignore it, as with any unknown class."""

    colibri_class: Literal["Error"] = "Error"
    field: str = ""
    reason: str = ""


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
    | ConnectionStats
    | Error,
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
        Error,
    )
}

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyMessage)


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in MESSAGE_CLASSES]
    return ".".join(parts)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?')  # (unrolled: linear, no backtracking)
_BRACKET = re.compile(r"[\[\]{}]")


def nesting_depth(text: str) -> int:
    """How deeply JSON arrays/objects nest in ``text`` (brackets inside strings do not count).
    Linear and without recursion: strings are cut out by a regular expression, then only the
    brackets are walked."""
    if text.count("[") + text.count("{") <= 1:
        return text.count("[") + text.count("{")
    depth = deepest = 0
    for ch in _BRACKET.findall(_JSON_STRING.sub("", text)):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def parse(
    data: str | bytes | dict[str, Any], *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH
) -> BridgeChannelMessage:
    """Text, bytes or a decoded JSON object -> the message model for its ``colibriClass``.
    Raises :class:`BridgeChannelError` (and nothing else) on any bad input."""
    if isinstance(data, bytes | str):
        if len(data) > max_bytes:
            raise BridgeChannelError("", f"message of {len(data)} bytes is larger than {max_bytes}")
        try:
            text = data.decode() if isinstance(data, bytes) else data
        except UnicodeDecodeError as exc:
            raise BridgeChannelError("", f"malformed JSON: {exc}") from exc
        if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
            raise BridgeChannelError("", f"JSON nested deeper than {max_depth}")
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise BridgeChannelError("", f"malformed JSON: {exc}") from exc
    else:
        obj = data
    if not isinstance(obj, dict):
        raise BridgeChannelError("", f"expected a JSON object, got {type(obj).__name__}")
    cls = obj.get("colibriClass")
    if cls is None:
        raise BridgeChannelError("colibriClass", "missing")
    if not isinstance(cls, str) or cls not in MESSAGE_CLASSES:
        raise BridgeChannelError("colibriClass", f"unknown message class {str(cls)[:64]!r}")
    try:
        message: BridgeChannelMessage = _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BridgeChannelError(_loc(first["loc"]) or "colibriClass", first["msg"]) from exc
    except RecursionError as exc:  # a decoded object handed in directly
        raise BridgeChannelError("", f"JSON nested deeper than {max_depth}") from exc
    return message


def to_dict(message: BridgeChannelMessage) -> dict[str, Any]:
    """The wire object: camelCase keys, ``colibriClass`` first, ``None`` fields left out."""
    out = message.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {"colibriClass": out.pop("colibriClass"), **out}


def serialize(message: BridgeChannelMessage) -> str:
    """Compact JSON text for one message."""
    return json.dumps(to_dict(message), separators=(",", ":"))
