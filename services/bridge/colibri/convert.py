"""Colibri JSON models (``services.common.colibri``) <-> the media engine's value types."""

from __future__ import annotations

from collections.abc import Iterable

from services.bridge.media.model import (
    DtlsFingerprint,
    IceCandidate,
    LocalTransport,
    MediaSources,
    PayloadType,
    RemoteTransport,
    RtpHeaderExtension,
)
from services.common import colibri


def candidate_to_media(c: colibri.Candidate) -> IceCandidate:
    return IceCandidate(
        foundation=c.foundation,
        component=c.component,
        protocol=c.protocol,
        priority=c.priority,
        ip=c.ip,
        port=c.port,
        type=c.type,
        id=c.id or "",
        generation=c.generation,
        network=c.network,
        tcptype=c.tcptype,
        rel_addr=c.rel_addr,
        rel_port=c.rel_port,
    )


def candidate_to_colibri(c: IceCandidate) -> colibri.Candidate:
    return colibri.Candidate(
        foundation=c.foundation,
        component=c.component,
        protocol=c.protocol,
        priority=c.priority,
        ip=c.ip,
        port=c.port,
        type=c.type,
        generation=c.generation,
        network=c.network,
        id=c.id or None,
        tcptype=c.tcptype,
        rel_addr=c.rel_addr,
        rel_port=c.rel_port,
    )


def remote_transport(t: colibri.IceUdpTransport) -> RemoteTransport:
    """The endpoint's answer; the caller has checked ufrag, pwd and fingerprints are present."""
    assert t.ufrag and t.pwd and t.fingerprints
    return RemoteTransport(
        ufrag=t.ufrag,
        pwd=t.pwd,
        fingerprints=[
            DtlsFingerprint(hash=f.hash, fingerprint=f.fingerprint, setup=f.setup or "actpass")  # type: ignore[arg-type]
            for f in t.fingerprints
        ],
        candidates=[candidate_to_media(c) for c in t.candidates or []],
    )


def add_candidates(remote: RemoteTransport, t: colibri.IceUdpTransport, limit: int) -> RemoteTransport:
    """``remote`` with the candidates of ``t`` it lacks (at most ``limit`` in all) and, when ``t``
    has them, its ICE credentials (a Jingle ``transport-info`` carries ufrag and pwd)."""
    candidates = list(remote.candidates)
    known = {(c.ip, c.port, c.protocol) for c in candidates}
    for c in t.candidates or []:
        media = candidate_to_media(c)
        if (media.ip, media.port, media.protocol) not in known and len(candidates) < limit:
            known.add((media.ip, media.port, media.protocol))
            candidates.append(media)
    return RemoteTransport(
        ufrag=t.ufrag or remote.ufrag,
        pwd=t.pwd or remote.pwd,
        fingerprints=remote.fingerprints,
        candidates=candidates,
    )


def local_transport(t: LocalTransport, web_socket: str | None) -> colibri.IceUdpTransport:
    """What the bridge advertises for a channel-bundle."""
    return colibri.IceUdpTransport(
        ufrag=t.ufrag,
        pwd=t.pwd,
        rtcp_mux=t.rtcp_mux,
        fingerprints=[
            colibri.Fingerprint(fingerprint=f.fingerprint, hash=f.hash, setup=f.setup) for f in t.fingerprints
        ],
        candidates=[candidate_to_colibri(c) for c in t.candidates],
        web_socket=web_socket,
    )


def payload_type_to_media(pt: colibri.PayloadType) -> PayloadType:
    return PayloadType(
        id=pt.id,
        name=pt.name,
        clockrate=pt.clockrate,
        channels=pt.channels if pt.channels is not None else 1,
        parameters={k: str(v) for k, v in pt.parameters.items()},
        rtcp_fbs=[(fb.type, fb.subtype or "") for fb in pt.rtcp_fbs or []],
    )


def media_sources(
    audio: Iterable[
        tuple[list[int], list[colibri.SsrcGroup], list[colibri.PayloadType], list[colibri.RtpHdrExt]]
    ],
    video: Iterable[
        tuple[list[int], list[colibri.SsrcGroup], list[colibri.PayloadType], list[colibri.RtpHdrExt]]
    ],
    muted: Iterable[str] = (),
) -> MediaSources:
    """What one endpoint sends, from its audio and video channels' descriptions.

    SSRCs listed only inside a video ssrc-group (RTX, simulcast layers) count as video SSRCs too.
    Payload types and header extensions of all channels are merged (first one wins per id).
    """
    audio_ssrcs: list[int] = []
    video_ssrcs: list[int] = []
    groups: list[tuple[str, list[int]]] = []
    pts: dict[int, PayloadType] = {}
    exts: dict[int, RtpHeaderExtension] = {}

    def add(target: list[int], ssrcs: Iterable[int]) -> None:
        for s in ssrcs:
            if s not in target:
                target.append(s)

    for kind, target in ((audio, audio_ssrcs), (video, video_ssrcs)):
        for sources, ssrc_groups, payload_types, hdrexts in kind:
            add(target, sources)
            for g in ssrc_groups:
                add(target, g.sources)
                groups.append((g.semantics, list(g.sources)))
            for pt in payload_types:
                pts.setdefault(pt.id, payload_type_to_media(pt))
            for ext in hdrexts:
                exts.setdefault(ext.id, RtpHeaderExtension(id=ext.id, uri=ext.uri))
    return MediaSources(
        audio_ssrcs=audio_ssrcs,
        video_ssrcs=video_ssrcs,
        ssrc_groups=groups,
        payload_types=list(pts.values()),
        rtp_hdrexts=list(exts.values()),
        muted=frozenset(muted),
    )
