"""RID-signalled simulcast: layers identified by the RTP stream id header extensions.

Firefox and Safari simulcast the standard way (RFC 8853): each layer is an RTP stream named by a
RID (``a=rid``), and every packet of it carries that name in the ``rtp-stream-id`` header
extension, or, for its retransmissions, in ``repaired-rtp-stream-id`` (RFC 8852); ``mid``
(RFC 8843) names the m-line. The SSRCs the browser picks are not tied to the RIDs in the SDP.

The focus signals what every endpoint sends as SSRCs with ``SIM`` and ``FID`` groups over Colibri,
whatever the browser (as Jitsi does: lib-jitsi-meet groups the SSRCs Firefox lists as ``SIM``), and
:mod:`..forwarding.simulcast` turns a ``SIM`` group into a source whose layers are in group order. For an
endpoint that negotiated ``rtp-stream-id``, a :class:`RidBinder` reads the RID of the first packet
of each SSRC and, when what it learnt disagrees with the signalled sources (layers in another
order, or SSRCs and RTX pairs nobody signalled), returns corrected :class:`MediaSources`: the
layers ordered by RID (:func:`rid_rank`), RTX SSRCs paired with the layer whose RID they repair.
Receivers are never told: they get each source as one plain SSRC stream either way, on the SSRC
they were told (the signalled group's first, kept in ``MediaSources.forward_ssrcs`` when the RIDs
put another SSRC first).

No I/O; header extensions are read with :func:`.rtp.find_extension`.
"""

from __future__ import annotations

import dataclasses
import re

from ..model import MediaSources
from . import rtp

RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

MAX_RID_LENGTH = 16
"""RFC 8851 allows 255 characters; browsers use one to three. Longer values are ignored."""
MAX_BOUND_SSRCS = 32
"""SSRCs learnt per endpoint (three layers and their RTX, with room for restarts); more are not
looked at."""

_TOKEN = re.compile(rb"[A-Za-z0-9_-]{1,%d}" % MAX_RID_LENGTH)

# low to high: the web client's quarter/half/full, then the usual low/medium/high spellings
_NAMED_ORDER = {"q": 0, "h": 1, "f": 2, "l": 0, "low": 0, "m": 1, "mid": 1, "high": 2, "hi": 2}


def sdes_value(packet: bytes | bytearray | memoryview, ext_id: int | None) -> str | None:
    """The RID (or MID) an SDES header extension element carries (RFC 8852 section 3: the value
    alone, no terminator), or ``None`` when absent or not a short alphanumeric token."""
    if ext_id is None:
        return None
    value = rtp.find_extension(packet, ext_id)
    if not value:
        return None
    value = value.rstrip(b"\x00")  # some senders pad with NULs
    if not _TOKEN.fullmatch(value):
        return None
    return value.decode("ascii")


def rid_rank(rid: str) -> tuple[int, int, str]:
    """Sort key putting RIDs low to high: digits by value (Jitsi's ``1``, ``2``, ``3``, mediasoup's
    ``r0``…), the web client's ``q`` < ``h`` < ``f`` and low/medium/high names, else by name."""
    digits = re.search(r"\d+", rid)
    if rid.lower() in _NAMED_ORDER:
        return (0, _NAMED_ORDER[rid.lower()], rid)
    if digits is not None:
        return (1, int(digits.group()), rid)
    return (2, 0, rid)


@dataclasses.dataclass
class RidBinder:
    """What one endpoint's RID-tagged packets say about its SSRCs, against what was signalled."""

    sources: MediaSources
    rid_ext: int | None = None
    repaired_ext: int | None = None
    media_rids: dict[int, str] = dataclasses.field(default_factory=dict)
    repaired_rids: dict[int, str] = dataclasses.field(default_factory=dict)
    seen: set[int] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        self.rid_ext = self.sources.header_extension_id(RTP_STREAM_ID_URI)
        self.repaired_ext = self.sources.header_extension_id(REPAIRED_RTP_STREAM_ID_URI)

    @property
    def active(self) -> bool:
        return self.rid_ext is not None or self.repaired_ext is not None

    def wants(self, ssrc: int) -> bool:
        """Whether a packet of ``ssrc`` is still worth looking at (O(1), per packet)."""
        return ssrc not in self.seen and len(self.seen) < MAX_BOUND_SSRCS and self.active

    def observe(self, ssrc: int, packet: bytes | bytearray | memoryview) -> MediaSources | None:
        """The first packet of a video SSRC: learn its RID; returns corrected sources when they
        differ from the signalled ones (else ``None``)."""
        if not self.wants(ssrc):
            return None
        rid = sdes_value(packet, self.rid_ext)
        repaired = sdes_value(packet, self.repaired_ext)
        if rid is None and repaired is None:
            # no tag on this packet (libwebrtc stops tagging once acknowledged): nothing to learn
            self.seen.add(ssrc)
            return None
        self.seen.add(ssrc)
        if repaired is not None:
            self.repaired_rids[ssrc] = repaired
        else:
            assert rid is not None
            self.media_rids[ssrc] = rid
        corrected = bind(self.sources, self.media_rids, self.repaired_rids)
        if corrected == self.sources:
            return None
        self.sources = corrected
        return corrected


def bind(sources: MediaSources, media_rids: dict[int, str], repaired_rids: dict[int, str]) -> MediaSources:
    """``sources`` with the RID-learnt SSRCs in place: the ``SIM`` group holding any of them is
    ordered by RID (SSRCs without one keep their place after them); RID-tagged SSRCs nobody
    signalled become a ``SIM`` group of their own (or join the one holding their siblings);
    RTX SSRCs pair (``FID``) with the layer whose RID they repair, unless signalled already."""
    if not media_rids and not repaired_rids:
        return sources
    video = list(sources.video_ssrcs)
    groups = [(sem, list(ssrcs)) for sem, ssrcs in sources.ssrc_groups]
    in_sim = {s for sem, ssrcs in groups if sem == "SIM" for s in ssrcs}
    fid_media = {ssrcs[0] for sem, ssrcs in groups if sem == "FID" and len(ssrcs) == 2}
    fid_rtx = {ssrcs[1] for sem, ssrcs in groups if sem == "FID" and len(ssrcs) == 2}
    audio = set(sources.audio_ssrcs)
    tagged = [s for s in media_rids if s not in audio and s not in fid_rtx]
    # the SIM group that holds a tagged SSRC takes every other tagged one (one camera per RID set)
    stale: list[int] = []
    forward = dict(sources.forward_ssrcs)
    sim_index = next(
        (i for i, (sem, ssrcs) in enumerate(groups) if sem == "SIM" and set(ssrcs) & set(tagged)), None
    )
    if sim_index is None and len(tagged) >= 2:
        groups.insert(0, ("SIM", []))
        sim_index = 0
    if sim_index is not None:
        members = groups[sim_index][1]
        for s in tagged:
            if s not in members and s not in in_sim:
                members.append(s)
        known = [s for s in members if s in media_rids]
        unknown = [s for s in members if s not in media_rids]
        by_rid: dict[str, int] = {}
        for s in known:  # one SSRC per RID: the newest (a restarted sender) wins
            by_rid[media_rids[s]] = s
        ordered = [by_rid[r] for r in sorted(by_rid, key=rid_rank)]
        stale = [s for s in known if s not in ordered]
        in_sim.update(members)
        new_members = ordered + unknown
        if members and new_members and new_members[0] != members[0] and members[0] not in stale:
            # receivers were told the group's first SSRC: they keep getting the source on it
            told = forward.pop(members[0], members[0])
            forward[new_members[0]] = told
        groups[sim_index] = ("SIM", new_members)
        groups = [(sem, ssrcs) for sem, ssrcs in groups if not (sem == "FID" and ssrcs[0] in stale)]
        video = [s for s in video if s not in stale]
    for s in tagged:
        if s not in video and s not in stale:
            video.append(s)
    rid_owner = {rid: s for s, rid in media_rids.items() if s in video}
    for rtx, rid in repaired_rids.items():
        media = rid_owner.get(rid)
        if media is None or rtx in audio or rtx in fid_rtx or media in fid_media or rtx in in_sim:
            continue
        groups.append(("FID", [media, rtx]))
        fid_media.add(media)
        fid_rtx.add(rtx)
        if rtx not in video:
            video.append(rtx)
    forward = {first: told for first, told in forward.items() if first != told}
    return dataclasses.replace(sources, video_ssrcs=video, ssrc_groups=groups, forward_ssrcs=forward)
