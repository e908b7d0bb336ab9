"""Jingle offers as SDP and SDP answers as Jingle: what a WebRTC peer outside a browser needs.

:class:`SdpOffer` renders the focus's Jingle offer (plus the remote sources) as a Unified Plan SDP
offer (one ``m=`` line per content for the local sender, one ``sendonly`` line - the bridge
sends - per remote owner and media), across renegotiations; :func:`parse_sdp_answer` turns the
answer back into Jingle contents (RFC 8866 SDP, the Jingle-SDP mapping of XEP-0167/0176/0320 and
the ``ssrc``/``ssrc-group`` attributes of RFC 5576). The recorder (``services/recorder/media.py``)
and the test participants (``tests/integration/``) use it; the web client mirrors it in
JavaScript. The Jingle models and XML are :mod:`services.common.jingle`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import ValidationError

from services.common.colibri import Candidate, Fingerprint, PayloadType, RtcpFb, RtpHdrExt, SsrcGroup
from services.common.jingle import (
    Jingle,
    JingleContent,
    JingleError,
    RtpDescription,
    Source,
    Transport,
    groups_for,
)


@dataclass
class RemoteSlot:
    """One ``sendonly`` m-line of the SDP offer: the sources of one owner for one media."""

    mid: str
    media: str
    owner: str
    sources: list[Source]
    groups: list[SsrcGroup]
    active: bool = True


class SdpOffer:
    """Renders the focus's Jingle offer as a Unified Plan SDP offer, across renegotiations.

    The session-initiate gives the transport, codecs and the sources already present; every
    ``source-add`` / ``source-remove`` updates the slots and :meth:`render` gives the next offer.
    Layout: one ``m=`` line per Jingle content (mid = content name) for what the participant sends,
    then one ``sendonly`` line (the bridge sends, the participant receives) per (owner, media) of
    remote sources (mid ``r<n>``). A removed owner's line stays, ``inactive`` and without SSRCs
    (Unified Plan never drops m-lines); if that owner's sources come back (a re-invited
    participant) they get a new line.
    """

    def __init__(self, offer: Jingle) -> None:
        if offer.action != "session-initiate":
            raise JingleError(
                "jingle@action", f"an SDP offer comes from session-initiate, not {offer.action}"
            )
        self.offer = offer
        transport = offer.transport()
        if transport is None or not transport.ufrag or not transport.pwd:
            raise JingleError("content/transport", "the offer has no ICE ufrag/pwd")
        self.transport = transport
        self.version = 1
        self.slots: list[RemoteSlot] = []
        self.add_sources(offer)

    def add_sources(self, jingle: Jingle) -> None:
        for content in jingle.contents:
            desc = content.description
            if desc is None:
                continue
            by_owner: dict[str, list[Source]] = {}
            for src in desc.sources:
                by_owner.setdefault(src.owner or "", []).append(src)
            for owner, sources in by_owner.items():
                slot = self._slot(owner, desc.media)
                if slot is None:
                    slot = RemoteSlot(
                        mid=f"r{len(self.slots)}", media=desc.media, owner=owner, sources=[], groups=[]
                    )
                    self.slots.append(slot)
                known = {s.ssrc for s in slot.sources}
                slot.sources.extend(s for s in sources if s.ssrc not in known)
                ssrcs = [s.ssrc for s in slot.sources]
                slot.groups = groups_for(ssrcs, [*slot.groups, *desc.ssrc_groups])
                slot.active = True

    def remove_sources(self, jingle: Jingle) -> None:
        for content in jingle.contents:
            desc = content.description
            if desc is None:
                continue
            gone = {s.ssrc for s in desc.sources}
            for slot in self.slots:
                if slot.media != desc.media:
                    continue
                slot.sources = [s for s in slot.sources if s.ssrc not in gone]
                slot.groups = groups_for([s.ssrc for s in slot.sources], slot.groups)
                if not slot.sources:
                    slot.active = False

    def _slot(self, owner: str, media: str) -> RemoteSlot | None:
        """The owner's *active* line for ``media``. A line that went inactive is never reused:
        receivers bind to their first SSRCs (aiortc does), so returning sources get a new line."""
        for slot in self.slots:
            if slot.owner == owner and slot.media == media and slot.active:
                return slot
        return None

    def render(self) -> str:
        t = self.transport
        mids = [c.name for c in self.offer.contents] + [s.mid for s in self.slots]
        lines = [
            "v=0",
            f"o=- 1 {self.version} IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            f"a=group:BUNDLE {' '.join(mids)}",
            "a=msid-semantic: WMS *",
        ]
        if t.ice_lite:
            lines.append("a=ice-lite")
        for content in self.offer.contents:
            desc = content.description
            if content.name == "data" or (desc is not None and desc.media == "application"):
                lines += self._data_section(content.name)
            elif desc is not None:
                lines += self._rtp_section(content.name, desc, "sendrecv", [], [])
        by_media = {c.description.media: c.description for c in self.offer.contents if c.description}
        for slot in self.slots:
            desc = by_media.get(slot.media)
            if desc is None:
                continue
            direction = "sendonly" if slot.active else "inactive"  # the bridge sends, we receive
            lines += self._rtp_section(slot.mid, desc, direction, slot.sources, slot.groups)
        self.version += 1
        return "\r\n".join(lines) + "\r\n"

    def _transport_lines(self, mid: str) -> list[str]:
        t = self.transport
        lines = [f"a=mid:{mid}", f"a=ice-ufrag:{t.ufrag}", f"a=ice-pwd:{t.pwd}"]
        for fp in t.fingerprints:
            lines.append(f"a=fingerprint:{fp.hash} {fp.fingerprint}")
        lines.append(
            f"a=setup:{t.fingerprints[0].setup or 'actpass'}" if t.fingerprints else "a=setup:actpass"
        )
        for c in t.candidates:
            lines.append("a=" + candidate_to_sdp(c))
        return lines

    def _rtp_section(
        self, mid: str, desc: RtpDescription, direction: str, sources: list[Source], groups: list[SsrcGroup]
    ) -> list[str]:
        pts = " ".join(str(pt.id) for pt in desc.payload_types)
        lines = [f"m={desc.media} 9 UDP/TLS/RTP/SAVPF {pts}", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0"]
        lines += self._transport_lines(mid)
        lines.append(f"a={direction}")
        lines.append("a=rtcp-mux")
        for ext in desc.hdrexts:
            lines.append(f"a=extmap:{ext.id} {ext.uri}")
        for pt in desc.payload_types:
            channels = f"/{pt.channels}" if desc.media == "audio" and pt.channels and pt.channels > 1 else ""
            lines.append(f"a=rtpmap:{pt.id} {pt.name}/{pt.clockrate}{channels}")
            if pt.parameters:
                lines.append(f"a=fmtp:{pt.id} " + ";".join(f"{k}={v}" if k else str(v) for k, v in pt.parameters.items()))
            for fb in pt.rtcp_fbs or ():
                lines.append(f"a=rtcp-fb:{pt.id} {fb.type}" + (f" {fb.subtype}" if fb.subtype else ""))
        # primary SSRCs first (aiortc takes the first a=ssrc as the media SSRC, the second as RTX)
        order = _ssrc_order(sources, groups)
        for group in groups:
            lines.append(f"a=ssrc-group:{group.semantics} {' '.join(str(s) for s in group.sources)}")
        for src in order:
            cname = src.owner or "remote"
            lines.append(f"a=ssrc:{src.ssrc} cname:{cname}")
            msid = src.msid or f"{src.name or src.ssrc} {src.name or src.ssrc}"
            lines.append(f"a=ssrc:{src.ssrc} msid:{msid}")
        return lines

    def _data_section(self, mid: str) -> list[str]:
        port = self.transport.sctp_port or 5000
        lines = ["m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0"]
        lines += self._transport_lines(mid)
        lines.append(f"a=sctp-port:{port}")
        return lines


def _ssrc_order(sources: list[Source], groups: list[SsrcGroup]) -> list[Source]:
    by_ssrc = {s.ssrc: s for s in sources}
    order: list[int] = []
    for group in groups:
        if group.semantics in ("SIM", "FID"):
            for ssrc in group.sources:
                if ssrc not in order and ssrc in by_ssrc:
                    order.append(ssrc)
    order += [s.ssrc for s in sources if s.ssrc not in order]
    return [by_ssrc[s] for s in order]


def candidate_to_sdp(c: Candidate) -> str:
    """``candidate:<foundation> <component> <protocol> <priority> <ip> <port> typ <type> ...``."""
    out = f"candidate:{c.foundation} {c.component} {c.protocol} {c.priority} {c.ip} {c.port} typ {c.type}"
    if c.rel_addr is not None and c.rel_port is not None:
        out += f" raddr {c.rel_addr} rport {c.rel_port}"
    if c.tcptype:
        out += f" tcptype {c.tcptype}"
    return out + f" generation {c.generation}"


def candidate_from_sdp(line: str) -> Candidate:
    """Parse an SDP ``candidate:`` attribute (with or without the ``a=`` prefix)."""
    text = line.removeprefix("a=").removeprefix("candidate:")
    parts = text.split()
    if len(parts) < 8 or parts[6] != "typ":
        raise JingleError("candidate", f"malformed SDP candidate: {line!r}")
    extra = dict(zip(parts[8::2], parts[9::2], strict=False))
    try:
        return Candidate(
            foundation=parts[0],
            component=int(parts[1]),
            protocol=parts[2].lower(),
            priority=int(parts[3]),
            ip=parts[4],
            port=int(parts[5]),
            type=parts[7],
            generation=int(extra.get("generation", 0)),
            rel_addr=extra.get("raddr"),
            rel_port=int(extra["rport"]) if "rport" in extra else None,
            tcptype=extra.get("tcptype"),
        )
    except (ValueError, ValidationError) as exc:
        raise JingleError("candidate", f"malformed SDP candidate {line!r}: {exc}") from None


_FMTP_SPLIT = re.compile(r"\s*;\s*")


@dataclass
class _SdpSection:
    kind: str
    mid: str | None = None
    direction: str = "sendrecv"
    attrs: list[tuple[str, str]] = field(default_factory=list)


def _sdp_sections(sdp: str) -> tuple[list[tuple[str, str]], list[_SdpSection]]:
    session: list[tuple[str, str]] = []
    sections: list[_SdpSection] = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            sections.append(_SdpSection(kind=line[2:].split()[0]))
            continue
        if not line.startswith("a="):
            continue
        name, _, value = line[2:].partition(":")
        target = sections[-1].attrs if sections else session
        target.append((name, value))
        if sections:
            if name == "mid":
                sections[-1].mid = value
            elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                sections[-1].direction = name
    return session, sections


def parse_sdp_answer(
    sdp: str, *, owner: str | None = None, name_prefix: str | None = None
) -> list[JingleContent]:
    """An SDP answer to :class:`SdpOffer` as Jingle contents for ``session-accept``.

    Only the sections whose mid is a Jingle content name (``audio``, ``video``, ``data``) are the
    participant's own; their sources become ``<source/>`` elements (named ``<prefix>-a0``/``-v0``
    when ``name_prefix`` is given, Jitsi's source names) owned by ``owner``. The transport comes
    from the first bundled section.
    """
    session, sections = _sdp_sections(sdp)
    contents: list[JingleContent] = []
    transport = Transport(rtcp_mux=True)
    for key, value in session:
        if key == "ice-ufrag":
            transport.ufrag = value
        elif key == "ice-pwd":
            transport.pwd = value
        elif key == "fingerprint":
            hash_, _, fp = value.partition(" ")
            transport.fingerprints.append(Fingerprint(hash=hash_, fingerprint=fp.strip()))
    own = [s for s in sections if s.mid in ("audio", "video", "data")]
    if not own:
        raise JingleError("sdp", "the answer has no audio/video/data section")
    setup: str | None = None
    for key, value in own[0].attrs:
        if key == "ice-ufrag":
            transport.ufrag = value
        elif key == "ice-pwd":
            transport.pwd = value
        elif key == "fingerprint":
            hash_, _, fp = value.partition(" ")
            transport.fingerprints = [Fingerprint(hash=hash_, fingerprint=fp.strip())]
        elif key == "setup":
            setup = value
        elif key == "candidate":
            transport.candidates.append(candidate_from_sdp(value))
    if not transport.ufrag or not transport.pwd:
        raise JingleError("sdp", "the answer has no ice-ufrag/ice-pwd")
    if not transport.fingerprints:
        raise JingleError("sdp", "the answer has no DTLS fingerprint")
    for fingerprint in transport.fingerprints:
        if setup in ("active", "passive", "actpass"):
            fingerprint.setup = setup  # type: ignore[assignment]
    for section in own:
        assert section.mid is not None
        if section.kind == "application":
            contents.append(
                JingleContent(
                    name=section.mid,
                    senders="both",
                    description=RtpDescription(media="application"),
                    transport=transport,
                )
            )
            continue
        desc = _parse_rtp_section(section, owner, name_prefix)
        senders = {"sendrecv": "both", "sendonly": "responder", "recvonly": "initiator", "inactive": "none"}[
            section.direction
        ]
        contents.append(
            JingleContent(
                name=section.mid, creator="initiator", senders=senders, description=desc, transport=transport
            )
        )
    return contents


def _parse_rtp_section(section: _SdpSection, owner: str | None, name_prefix: str | None) -> RtpDescription:
    desc = RtpDescription(media=section.kind, rtcp_mux=True)
    pts: dict[int, PayloadType] = {}
    msids: dict[int, str] = {}
    ssrcs: list[int] = []
    for key, value in section.attrs:
        try:
            if key == "rtpmap":
                pt_id, _, codec = value.partition(" ")
                name, clock, *chans = codec.split("/")
                pts[int(pt_id)] = PayloadType(
                    id=int(pt_id), name=name, clockrate=int(clock), channels=int(chans[0]) if chans else None
                )
            elif key == "fmtp":
                pt_id, _, params = value.partition(" ")
                pt = pts.get(int(pt_id))
                if pt is not None:
                    for item in _FMTP_SPLIT.split(params.strip()):
                        k, eq, v = item.partition("=")
                        if not eq and k:  # a nameless parameter (RFC 2198's ``111/111``)
                            pt.parameters[""] = k
                        elif k:
                            pt.parameters[k] = v
            elif key == "rtcp-fb":
                pt_id, _, fb = value.partition(" ")
                type_, _, subtype = fb.partition(" ")
                target = pts.get(int(pt_id)) if pt_id != "*" else None
                if target is not None:
                    target.rtcp_fbs = [*(target.rtcp_fbs or []), RtcpFb(type=type_, subtype=subtype or None)]
            elif key == "extmap":
                ext_id, _, uri = value.partition(" ")
                desc.hdrexts.append(RtpHdrExt(id=int(ext_id.split("/")[0]), uri=uri.split()[0]))
            elif key == "ssrc":
                ssrc_s, _, rest = value.partition(" ")
                ssrc = int(ssrc_s)
                if ssrc not in ssrcs:
                    ssrcs.append(ssrc)
                if rest.startswith("msid:"):
                    msids[ssrc] = rest[5:]
            elif key == "ssrc-group":
                semantics, *members = value.split()
                desc.ssrc_groups.append(SsrcGroup(semantics=semantics, sources=[int(m) for m in members]))
        except (ValueError, ValidationError) as exc:
            raise JingleError(f"sdp/{section.mid}/{key}", f"malformed {value!r}: {exc}") from None
    desc.payload_types = list(pts.values())
    # Jitsi names one source per track (``<endpoint>-a0``, ``-v0``); RTX/simulcast SSRCs share it
    source_name = f"{name_prefix}-{'a' if section.kind == 'audio' else 'v'}0" if name_prefix else None
    for ssrc in ssrcs:
        desc.sources.append(Source(ssrc=ssrc, name=source_name, owner=owner, msid=msids.get(ssrc)))
    return desc
