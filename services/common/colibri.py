"""Colibri REST JSON (Colibri REST v1: jitsi-videobridge's ``doc/rest-colibri.md``) as pydantic models.

One source of truth for the wire format: the bridge parses requests and renders responses with these
models, the focus builds requests and reads responses with them. JSON keys are the document's
kebab-case names (``channel-bundle-id``, ``rtp-level-relay-type``...); Python attributes are the
snake-case equivalents. Unknown keys are rejected so a misspelt field is a clear error instead of
being silently dropped.

Render with :func:`dump` (by alias, ``None`` omitted) and parse with :func:`parse_conference`, which
raises :class:`ColibriFormatError` naming the offending field (``contents[0].channels[1].expire``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ICE_UDP_XMLNS: Final = "urn:xmpp:jingle:transports:ice-udp:1"
"""Namespace of the ICE-UDP transport (XEP-0176); the only transport the bridge offers."""

CONTENT_NAMES = ("audio", "video", "data")

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
RelayType = Literal["translator", "mixer"]
Ssrc = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""An RTP synchronization source identifier (unsigned 32-bit)."""


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class ColibriModel(BaseModel):
    """Base: kebab-case JSON names, unknown keys rejected, attribute names accepted too."""

    model_config = ConfigDict(alias_generator=_kebab, populate_by_name=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """The wire form: keys by alias, ``None`` fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class RtcpFb(ColibriModel):
    """``{"type": "nack", "subtype": "pli"}`` - one RTCP feedback mechanism of a payload type."""

    type: str = Field(min_length=1)
    subtype: str | None = None


class PayloadType(ColibriModel):
    """An RTP payload type the endpoint sends/accepts (SDP ``a=rtpmap`` + ``a=fmtp`` + ``a=rtcp-fb``)."""

    id: int = Field(ge=0, le=127)
    name: str = Field(min_length=1)
    clockrate: int = Field(ge=0)
    channels: int | None = Field(default=None, ge=0)
    parameters: dict[str, str | int | float] = Field(default_factory=dict)
    rtcp_fbs: list[RtcpFb] | None = None


class RtpHdrExt(ColibriModel):
    """``{"id": 1, "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}`` (SDP ``a=extmap``)."""

    id: int = Field(ge=1, le=255)
    uri: str = Field(min_length=1)


class SsrcGroup(ColibriModel):
    """``{"semantics": "FID", "sources": [2, 3]}`` - SIM (simulcast layers) or FID (RTX pairs)."""

    semantics: str = Field(min_length=1)
    sources: list[Ssrc] = Field(default_factory=list)


class Channel(ColibriModel):
    """An RTP channel of one endpoint in one content (audio or video)."""

    id: str | None = None
    endpoint: str | None = None
    channel_bundle_id: str | None = None
    expire: int | None = Field(default=None, ge=0)
    initiator: bool | None = None
    direction: Direction | None = None
    last_n: int | None = Field(default=None, ge=-1)
    rtp_level_relay_type: RelayType | None = None
    receive_simulcast_layer: int | None = Field(default=None, ge=0)
    sources: list[Ssrc] | None = None
    ssrc_groups: list[SsrcGroup] | None = None
    payload_types: list[PayloadType] | None = None
    rtp_hdrexts: list[RtpHdrExt] | None = None


class SctpConnection(ColibriModel):
    """An SCTP (data channel) association of one endpoint in the ``data`` content."""

    id: str | None = None
    endpoint: str | None = None
    channel_bundle_id: str | None = None
    expire: int | None = Field(default=None, ge=0)
    initiator: bool | None = None
    port: int | None = Field(default=None, ge=0, le=65535)


class Content(ColibriModel):
    """``audio``, ``video`` (channels) or ``data`` (sctpconnections)."""

    name: Literal["audio", "video", "data"]
    channels: list[Channel] | None = None
    sctpconnections: list[SctpConnection] | None = None


class Candidate(ColibriModel):
    """An ICE candidate (XEP-0176 ``<candidate/>`` as JSON)."""

    foundation: str
    component: int = Field(ge=1, le=256)
    protocol: str
    priority: int = Field(ge=0, le=2**32 - 1)
    ip: str
    port: int = Field(ge=0, le=65535)
    type: str
    generation: int = 0
    network: int = 0
    id: str | None = None
    tcptype: str | None = None
    rel_addr: str | None = None
    rel_port: int | None = Field(default=None, ge=0, le=65535)


class Fingerprint(ColibriModel):
    """A DTLS certificate fingerprint (XEP-0320): ``hash`` is e.g. ``sha-256``."""

    fingerprint: str = Field(min_length=1)
    hash: str = Field(min_length=1)
    setup: Literal["actpass", "active", "passive", "holdconn"] | None = None


class IceUdpTransport(ColibriModel):
    """The ICE-UDP transport of a channel-bundle, both directions.

    From the bridge: its ufrag/pwd, DTLS fingerprints, candidates and the Colibri WebSocket URL
    (``web-socket``). From the focus: the endpoint's ufrag/pwd, fingerprints and candidates (which
    may be empty - the ICE-lite bridge learns the address from the first STUN request).
    """

    xmlns: Literal["urn:xmpp:jingle:transports:ice-udp:1"] = ICE_UDP_XMLNS
    ufrag: str | None = None
    pwd: str | None = None
    rtcp_mux: bool | None = None
    fingerprints: list[Fingerprint] | None = None
    candidates: list[Candidate] | None = None
    web_socket: str | None = None


class ChannelBundle(ColibriModel):
    """Channels sharing one transport; Parley bundles everything of one endpoint (id = endpoint id)."""

    id: str = Field(min_length=1)
    transport: IceUdpTransport | None = None


class Conference(ColibriModel):
    """A Colibri conference: request body of POST/PATCH and response of GET/POST/PATCH."""

    id: str | None = None
    name: str | None = None
    contents: list[Content] | None = None
    channel_bundles: list[ChannelBundle] | None = None


class ConferenceRef(ColibriModel):
    """An entry of ``GET /colibri/conferences``: ``{"id": "a1b2c3"}``."""

    id: str


class ColibriFormatError(ValueError):
    """A request body is not valid Colibri JSON. ``field`` is the dotted path of the first problem."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def parse_conference(body: bytes | str | Any) -> Conference:
    """Parse a POST/PATCH body (bytes, text, or already-decoded JSON) into a :class:`Conference`.

    The document's first example posts ``[]`` to create a conference, so an empty JSON array is read as
    an empty conference object. Raises :class:`ColibriFormatError` naming the field on bad input.
    """
    if isinstance(body, bytes | str):
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ColibriFormatError("", f"body is not UTF-8: {exc}") from exc
        if not body.strip():
            data: Any = {}
        else:
            try:
                data = json.loads(body)
            except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
                raise ColibriFormatError("", f"malformed JSON: {exc}") from exc
    else:
        data = body
    if data == []:
        data = {}
    if not isinstance(data, dict):
        raise ColibriFormatError("", f"expected a JSON object (a conference), got {type(data).__name__}")
    try:
        return Conference.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ColibriFormatError(_loc(first["loc"]) or "conference", first["msg"]) from exc
    except RecursionError as exc:
        raise ColibriFormatError("", "JSON nested too deep") from exc


def dump(model: ColibriModel) -> dict[str, Any]:
    """The wire JSON of any Colibri model (by alias, ``None`` omitted)."""
    return model.to_json()
