"""What the focus sends: Colibri requests to the bridge and Jingle to participants (pure builders).

Every shape comes from the shared wire-format modules (:mod:`services.common.colibri`,
:mod:`services.common.jingle`); this module decides *what* goes in them: the channels of one
participant in one channel-bundle, the codecs of the offer (those jicofo offers that aiortc and
browsers share), source ownership, and the Colibri fields of an answer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from services.common import colibri
from services.common.colibri import PayloadType, RtcpFb, RtpHdrExt
from services.common.jingle import (
    Jingle,
    JingleContent,
    JingleReason,
    RtpDescription,
    Source,
    channel_update,
    transport_from_colibri,
    transport_to_colibri,
)

from .conference import MediaSources, Participant

SCTP_PORT = 5000
RTP_MEDIA = ("audio", "video")
MIX_SOURCE_NAME = "jvb-mix-a0"
"""The source name the gateway's offer gives the bridge's mixed audio stream."""
MIX_MSID = "mixedmslabel mixedlabelaudio0"
"""Its msid."""

AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
"""Transport-wide sequence numbers (one numbering for the whole bundle: the same id in every
m-line, 5 as Jicofo offers it); the bridge answers them with transport-cc feedback."""


def _video_fbs() -> list[RtcpFb]:
    return [
        RtcpFb(type="ccm", subtype="fir"), RtcpFb(type="nack"), RtcpFb(type="nack", subtype="pli"),
        RtcpFb(type="goog-remb"), RtcpFb(type="transport-cc"),
    ]


# Jicofo's default codec set and payload types (jicofo ``Codecs``/``codec`` config): VP8 first
# (what Parley's own client sends unless asked otherwise), then VP9 and H.264, each with its RTX
# (RFC 4588); Opus with RED (RFC 2198, ``111/111``: redundancy of Opus itself) and telephone-event
# (RFC 4733).
OFFERED_PAYLOAD_TYPES: dict[str, list[PayloadType]] = {
    "audio": [
        PayloadType(id=111, name="opus", clockrate=48000, channels=2,
                    parameters={"minptime": "10", "useinbandfec": "1"},
                    rtcp_fbs=[RtcpFb(type="transport-cc")]),
        PayloadType(id=112, name="red", clockrate=48000, channels=2, parameters={"": "111/111"}),
        PayloadType(id=126, name="telephone-event", clockrate=8000),
    ],
    "video": [
        PayloadType(id=100, name="VP8", clockrate=90000, rtcp_fbs=_video_fbs()),
        PayloadType(id=96, name="rtx", clockrate=90000, parameters={"apt": "100"}),
        PayloadType(id=101, name="VP9", clockrate=90000, rtcp_fbs=_video_fbs()),
        PayloadType(id=97, name="rtx", clockrate=90000, parameters={"apt": "101"}),
        PayloadType(id=107, name="H264", clockrate=90000, rtcp_fbs=_video_fbs(),
                    parameters={"profile-level-id": "42e01f", "packetization-mode": "1"}),
        PayloadType(id=99, name="rtx", clockrate=90000, parameters={"apt": "107"}),
    ],
}  # fmt: skip
OFFERED_HDREXTS: dict[str, list[RtpHdrExt]] = {
    "audio": [RtpHdrExt(id=1, uri=AUDIO_LEVEL), RtpHdrExt(id=5, uri=TRANSPORT_CC)],
    "video": [RtpHdrExt(id=3, uri=ABS_SEND_TIME), RtpHdrExt(id=5, uri=TRANSPORT_CC)],
}


class AllocationError(Exception):
    """The bridge's answer to an allocation lacks what an offer needs."""


@dataclass(frozen=True)
class Allocation:
    channels: dict[str, str]
    transport: colibri.IceUdpTransport
    sctp: bool = False
    mixed_ssrc: int | None = None  # the bridge's mix-minus stream, for a mixer audio channel


# ------------------------------------------------------------------------------------ Colibri


def allocation_request(
    endpoint_id: str,
    *,
    colibri_id: str | None,
    expire: int,
    enable_sctp: bool = False,
    last_n: int = -1,
    muted: Collection[str] = (),
    mixer: bool = False,
) -> colibri.Conference:
    """Audio, video (and data) for one endpoint in one channel-bundle (Colibri REST v1 join example, step 3; docs/protocols.md#colibri-rest).

    With ``colibri_id`` None this is the body of the POST that creates the conference. ``mixer``
    (the SIP gateway, as Jicofo allocates for Jigasi): the audio channel is
    ``"rtp-level-relay-type": "mixer"`` (one mix-minus stream instead of everyone's) and the
    video channel has ``last-n`` 0 (no video).
    """
    contents = [
        colibri.Content(
            name=media,  # type: ignore[arg-type]
            channels=[
                colibri.Channel(
                    expire=expire,
                    initiator=True,
                    endpoint=endpoint_id,
                    direction="recvonly" if media in muted else "sendrecv",
                    channel_bundle_id=endpoint_id,
                    last_n=(0 if mixer else last_n if last_n >= 0 else None) if media == "video" else None,
                    rtp_level_relay_type="mixer" if mixer and media == "audio" else None,
                )
            ],
        )
        for media in RTP_MEDIA
    ]
    if enable_sctp:
        contents.append(
            colibri.Content(
                name="data",
                sctpconnections=[
                    colibri.SctpConnection(
                        expire=expire,
                        initiator=True,
                        endpoint=endpoint_id,
                        port=SCTP_PORT,
                        channel_bundle_id=endpoint_id,
                    )
                ],
            )
        )
    bundle = colibri.ChannelBundle(id=endpoint_id, transport=colibri.IceUdpTransport(rtcp_mux=True))
    return colibri.Conference(id=colibri_id, contents=contents, channel_bundles=[bundle])


def mute_patch(colibri_id: str, participant: Participant) -> colibri.Conference:
    """PATCH body making each of a participant's channels receive-only when its kind is muted
    (and send-receive again when not): Jicofo's mute over Colibri; the bridge then forwards
    nothing of that kind from it, whatever its client sends."""
    contents = [
        colibri.Content(
            name=media,  # type: ignore[arg-type]
            channels=[
                colibri.Channel(
                    id=participant.channels[media],
                    endpoint=participant.endpoint_id,
                    direction="recvonly" if media in participant.muted else "sendrecv",
                )
            ],
        )
        for media in RTP_MEDIA
        if media in participant.channels
    ]
    return colibri.Conference(id=colibri_id, contents=contents)


def read_allocation(response: colibri.Conference, endpoint_id: str, *, mixer: bool = False) -> Allocation:
    """The channel ids and the bundle transport the bridge gave ``endpoint_id`` (and with
    ``mixer``, the SSRC of the mixed stream: the audio channel's one source)."""
    channels: dict[str, str] = {}
    sctp = False
    mixed_ssrc: int | None = None
    for content in response.contents or ():
        mine = [
            c for c in content.channels or () if endpoint_id in (c.endpoint, c.channel_bundle_id) and c.id
        ]
        if mine:
            channels[content.name] = mine[-1].id  # type: ignore[assignment]
            if mixer and content.name == "audio" and mine[-1].sources:
                mixed_ssrc = mine[-1].sources[0]
        conns = [
            c
            for c in content.sctpconnections or ()
            if endpoint_id in (c.endpoint, c.channel_bundle_id) and c.id
        ]
        if conns:
            channels[content.name] = conns[-1].id  # type: ignore[assignment]
            sctp = True
    for content in response.contents or ():  # a bridge that does not echo endpoint ids
        only = [c for c in content.channels or () if c.id]
        if (
            content.name not in channels
            and len(only) == 1
            and not only[0].endpoint
            and not only[0].channel_bundle_id
        ):
            channels[content.name] = only[0].id  # type: ignore[assignment]
    missing = [m for m in RTP_MEDIA if m not in channels]
    if missing:
        raise AllocationError(f"no {'/'.join(missing)} channel for endpoint {endpoint_id} in the response")
    bundle = next((b for b in response.channel_bundles or () if b.id == endpoint_id), None)
    if bundle is None or bundle.transport is None:
        raise AllocationError(f"no channel-bundle transport for endpoint {endpoint_id} in the response")
    t = bundle.transport
    if not t.ufrag or not t.pwd or not t.fingerprints:
        raise AllocationError(f"the transport for endpoint {endpoint_id} lacks ufrag/pwd/fingerprint")
    if mixer and mixed_ssrc is None:
        raise AllocationError(f"no mixed audio source for endpoint {endpoint_id} in the response")
    return Allocation(channels=channels, transport=t, sctp=sctp, mixed_ssrc=mixed_ssrc)


def mixed_sources(allocation: Allocation) -> dict[str, MediaSources]:
    """What the gateway's offer carries instead of everyone's sources: the bridge's mixed audio
    stream, one SSRC, owned by no occupant."""
    if allocation.mixed_ssrc is None:  # read_allocation refuses such an answer for a mixed endpoint
        raise AllocationError("no mixed audio source in the allocation")
    return {"audio": MediaSources(sources=[Source(ssrc=allocation.mixed_ssrc, name=MIX_SOURCE_NAME,
                                                  msid=MIX_MSID)])}


def accept_patch(
    colibri_id: str, participant: Participant, accept: Jingle, expire: int
) -> colibri.Conference:
    """PATCH body carrying a participant's answered transport, sources and codecs (Colibri REST v1 join example, step 6; docs/protocols.md#colibri-rest)."""
    contents: list[colibri.Content] = []
    for content in accept.contents:
        channel_id = participant.channels.get(content.name)
        if channel_id is None:
            continue
        if content.name == "data":
            contents.append(
                colibri.Content(
                    name="data",
                    sctpconnections=[
                        colibri.SctpConnection(
                            id=channel_id,
                            endpoint=participant.endpoint_id,
                            channel_bundle_id=participant.endpoint_id,
                            expire=expire,
                        )
                    ],
                )
            )
            continue
        fields = channel_update(content.description) if content.description else {}
        owned = participant.sources.get(content.name)
        if owned is not None:  # sources as the focus recorded them (owner-checked)
            fields["sources"] = [s.ssrc for s in owned.sources]
            fields["ssrc_groups"] = list(owned.groups)
        contents.append(
            colibri.Content(
                name=content.name,  # type: ignore[arg-type]
                channels=[
                    colibri.Channel(
                        id=channel_id,
                        endpoint=participant.endpoint_id,
                        channel_bundle_id=participant.endpoint_id,
                        expire=expire,
                        **fields,  # type: ignore[arg-type]
                    )
                ],
            )
        )
    bundles = []
    transport = accept.transport()
    if transport is not None:
        bundles.append(
            colibri.ChannelBundle(id=participant.endpoint_id, transport=transport_to_colibri(transport))
        )
    return colibri.Conference(id=colibri_id, contents=contents, channel_bundles=bundles or None)


MAX_CANDIDATES = 32
"""Candidates of one transport-info relayed to the bridge (the bridge keeps as many in all)."""


def transport_patch(colibri_id: str, participant: Participant, message: Jingle) -> colibri.Conference | None:
    """PATCH body carrying the candidates of a participant's ``transport-info`` (with the ufrag and
    pwd it names, no fingerprint: the bridge adds them to the participant's answer). ``None`` when
    it has no candidate."""
    transport = message.transport()
    candidates: list[colibri.Candidate] = []
    for content in message.contents:  # with BUNDLE usually one content; each may carry some
        for candidate in content.transport.candidates if content.transport is not None else ():
            if candidate not in candidates:
                candidates.append(candidate)
    if transport is None or not candidates:
        return None
    return colibri.Conference(
        id=colibri_id,
        channel_bundles=[
            colibri.ChannelBundle(
                id=participant.endpoint_id,
                transport=colibri.IceUdpTransport(
                    ufrag=transport.ufrag or None,
                    pwd=transport.pwd or None,
                    candidates=candidates[:MAX_CANDIDATES],
                ),
            )
        ],
    )


def sources_patch(colibri_id: str, participant: Participant, expire: int) -> colibri.Conference:
    """PATCH body setting a participant's current sources (after source-add/-remove from it)."""
    contents = []
    for media in RTP_MEDIA:
        channel_id = participant.channels.get(media)
        if channel_id is None:
            continue
        ms = participant.sources.get(media, MediaSources())
        contents.append(
            colibri.Content(
                name=media,  # type: ignore[arg-type]
                channels=[
                    colibri.Channel(
                        id=channel_id,
                        endpoint=participant.endpoint_id,
                        expire=expire,
                        sources=[s.ssrc for s in ms.sources],
                        ssrc_groups=list(ms.groups),
                    )
                ],
            )
        )
    return colibri.Conference(id=colibri_id, contents=contents)


def expire_request(colibri_id: str, participant: Participant) -> colibri.Conference:
    """PATCH body expiring all of a participant's channels (``expire: 0``)."""
    contents = []
    for name, channel_id in participant.channels.items():
        if name == "data":
            contents.append(
                colibri.Content(
                    name="data", sctpconnections=[colibri.SctpConnection(id=channel_id, expire=0)]
                )
            )
        else:
            contents.append(
                colibri.Content(name=name, channels=[colibri.Channel(id=channel_id, expire=0)])  # type: ignore[arg-type]
            )
    return colibri.Conference(id=colibri_id, contents=contents)


# ------------------------------------------------------------------------------------- Jingle


def strip_simulcast(ms: MediaSources) -> MediaSources:
    """What a receiver is told of a simulcast sender, as Jicofo does: of each ``SIM`` group only
    the first SSRC (the bridge forwards whichever layer it picks under that one, see
    ``services/bridge/media/forwarding/simulcast.py``) and its RTX (the ``FID`` group pairing them); the
    other layers, their RTX and the ``SIM`` group are left out. Senders without simulcast are
    unchanged."""
    dropped: set[int] = set()
    for group in ms.groups:
        if group.semantics == "SIM":
            dropped.update(group.sources[1:])
    if not dropped:
        return ms
    groups = []
    for group in ms.groups:
        if group.semantics == "SIM":
            continue
        if group.semantics == "FID" and group.sources and group.sources[0] in dropped:
            dropped.update(group.sources[1:])
            continue
        groups.append(group)
    return MediaSources(sources=[s for s in ms.sources if s.ssrc not in dropped], groups=groups)


def _descriptions(sources: dict[str, MediaSources], *, with_codecs: bool) -> list[JingleContent]:
    contents = []
    for media in RTP_MEDIA:
        ms = strip_simulcast(sources.get(media, MediaSources()))
        if not with_codecs and not ms.sources:
            continue
        desc = RtpDescription(
            media=media,
            payload_types=[pt.model_copy(deep=True) for pt in OFFERED_PAYLOAD_TYPES[media]]
            if with_codecs
            else [],
            hdrexts=list(OFFERED_HDREXTS[media]) if with_codecs else [],
            sources=list(ms.sources),
            ssrc_groups=list(ms.groups),
            rtcp_mux=with_codecs,
        )
        contents.append(JingleContent(name=media, creator="initiator", senders="both", description=desc))
    return contents


def session_initiate(
    sid: str,
    initiator: str,
    allocation: Allocation,
    others: dict[str, MediaSources],
    *,
    ice_lite: bool,
) -> Jingle:
    """The offer: codecs, the bridge's transport in every content, the others' sources, BUNDLE."""
    contents = _descriptions(others, with_codecs=True)
    transport = transport_from_colibri(allocation.transport, ice_lite=ice_lite)
    for content in contents:
        content.transport = transport
    if allocation.sctp:
        data_transport = transport_from_colibri(allocation.transport, ice_lite=ice_lite, sctp_port=SCTP_PORT)
        contents.append(
            JingleContent(
                name="data",
                creator="initiator",
                senders="both",
                description=RtpDescription(media="application"),
                transport=data_transport,
            )
        )
    return Jingle(
        action="session-initiate",
        sid=sid,
        initiator=initiator,
        contents=contents,
        bundle=[c.name for c in contents],
    )


def source_update(action: str, sid: str, sources: dict[str, MediaSources]) -> Jingle:
    """``source-add`` / ``source-remove`` carrying ``sources``."""
    if action not in ("source-add", "source-remove"):
        raise ValueError(f"not a source action: {action}")
    return Jingle(action=action, sid=sid, contents=_descriptions(sources, with_codecs=False))  # type: ignore[arg-type]


def session_terminate(sid: str, condition: str = "success", text: str | None = None) -> Jingle:
    return Jingle(action="session-terminate", sid=sid, reason=JingleReason(condition, text))


def _own_source_name(endpoint_id: str, letter: str, name: str) -> bool:
    prefix = f"{endpoint_id}-{letter}"
    rest = name[len(prefix) :]
    return name.startswith(prefix) and rest.isdigit() and len(rest) <= 2


def owned_sources(jingle: Jingle, participant: Participant) -> dict[str, MediaSources]:
    """The sources a participant announced, owned by it whatever it claimed: the owner is its
    occupant JID and unnamed sources get Jitsi's ``<endpoint>-a0`` / ``-v0`` names."""
    out: dict[str, MediaSources] = {}
    for content in jingle.contents:
        desc = content.description
        if desc is None or desc.media not in RTP_MEDIA or not desc.sources:
            continue
        letter = "a" if desc.media == "audio" else "v"
        ms = out.setdefault(desc.media, MediaSources())
        for src in desc.sources:
            # a name that is not the participant's own (``<endpoint>-a<n>``/``-v<n>``) would let
            # it pose as someone else's source: it gets the default name instead
            name = (
                src.name if src.name and _own_source_name(participant.endpoint_id, letter, src.name) else None
            )
            ms.sources.append(
                Source(
                    ssrc=src.ssrc,
                    name=name or f"{participant.endpoint_id}-{letter}0",
                    owner=participant.occupant_jid,
                    msid=src.msid,
                    video_type=src.video_type if desc.media == "video" else None,
                )
            )
        ssrcs = {s.ssrc for s in desc.sources}
        ms.groups.extend(g for g in desc.ssrc_groups if g.sources and set(g.sources) <= ssrcs)
    return out


def merge_sources(current: dict[str, MediaSources], added: dict[str, MediaSources]) -> None:
    for media, ms in added.items():
        target = current.setdefault(media, MediaSources())
        known = {s.ssrc for s in target.sources}
        target.sources.extend(s for s in ms.sources if s.ssrc not in known)
        target.groups.extend(g for g in ms.groups if g not in target.groups)


def remove_sources(
    current: dict[str, MediaSources], removed: dict[str, MediaSources]
) -> dict[str, MediaSources]:
    """Remove ``removed`` SSRCs from ``current``; returns what was actually removed."""
    out: dict[str, MediaSources] = {}
    for media, ms in removed.items():
        target = current.get(media)
        if target is None:
            continue
        gone = {s.ssrc for s in ms.sources}
        actually = [s for s in target.sources if s.ssrc in gone]
        if not actually:
            continue
        target.sources = [s for s in target.sources if s.ssrc not in gone]
        dropped = [g for g in target.groups if set(g.sources) & gone]
        target.groups = [g for g in target.groups if not set(g.sources) & gone]
        out[media] = MediaSources(sources=actually, groups=dropped)
    return out
