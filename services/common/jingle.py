"""Jingle (XEP-0166/0167/0176/0320/0339, Jitsi extensions) as models, XML and Colibri.

One source of truth for the Jingle wire format Parley's focus speaks with participants:

* **models** - :class:`Jingle` (one ``<jingle/>`` element: action, sid, contents, BUNDLE group,
  reason), :class:`JingleContent`, :class:`RtpDescription`, :class:`Source`, :class:`Transport`.
  Payload types, header extensions, SSRC groups, candidates and fingerprints *are* the Colibri
  models of :mod:`services.common.colibri` (Colibri JSON is the JSON form of the same Jingle
  elements, XEP-0340), so nothing is spelled twice;
* **XML** - :func:`to_element` / :func:`parse_element` (``xml.etree`` elements, what slixmpp
  carries) and :func:`to_xml` / :func:`parse_xml` (text, parsed with defusedxml);
* **Colibri** - :func:`transport_from_colibri` turns a channel-bundle transport of the bridge into
  the Jingle transport of an offer; :func:`transport_to_colibri` and :func:`channel_update` turn a
  participant's answer into the Colibri fields the focus PATCHes;
* **SDP** is in :mod:`services.common.jingle_sdp` (the recorder and the test participants
  answer offers with it; the web client mirrors it in JavaScript).

Wire shape of an offer (Jicofo's, with Parley's ``ice-lite`` marker; docs/protocols.md#join)::

    <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' initiator='focus@...' sid='...'>
      <content creator='initiator' name='audio' senders='both'>
        <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
          <payload-type id='111' name='opus' clockrate='48000' channels='2'>
            <parameter name='minptime' value='10'/>
            <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
          </payload-type>
          <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1' uri='...'/>
          <rtcp-mux/>
          <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='11' name='abcd-a0'>
            <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='room@muc.meet.jitsi/abcd'/>
          </source>
          <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
            <source ssrc='12'/><source ssrc='13'/>
          </ssrc-group>
        </description>
        <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='..' pwd='..'>
          <web-socket xmlns='http://jitsi.org/protocol/colibri' url='wss://.../colibri-ws/...'/>
          <ice-lite xmlns='http://jitsi.org/protocol/colibri'/>
          <rtcp-mux/>
          <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>AB:..</fingerprint>
          <candidate component='1' foundation='1' generation='0' id='..' ip='..' network='0'
                     port='10000' priority='..' protocol='udp' type='host'/>
        </transport>
      </content>
      ...
      <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>
        <content name='audio'/><content name='video'/>
      </group>
    </jingle>

``<ice-lite/>`` is Parley's: its bridges are ICE-lite (jitsi-videobridge is a full agent), and a
WebRTC answerer must know that to take the controlling role; it becomes ``a=ice-lite`` in SDP.
Malformed input raises :class:`JingleError` naming the element or attribute at fault.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

import defusedxml.ElementTree as SafeET
from pydantic import ValidationError

from services.common import colibri
from services.common.colibri import Candidate, Fingerprint, PayloadType, RtcpFb, RtpHdrExt, SsrcGroup

NS_JINGLE = "urn:xmpp:jingle:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_RTCP_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
NS_HDREXT = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
NS_SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
NS_ICE_UDP = colibri.ICE_UDP_XMLNS
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_SCTP = "urn:xmpp:jingle:transports:dtls-sctp:1"
NS_GROUPING = "urn:xmpp:jingle:apps:grouping:0"
NS_JITMEET = "http://jitsi.org/jitmeet"
NS_COLIBRI = "http://jitsi.org/protocol/colibri"
NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"
NS_FOCUS = "http://jitsi.org/protocol/focus"

Action = Literal[
    "session-initiate",
    "session-accept",
    "session-terminate",
    "session-info",
    "source-add",
    "source-remove",
    "transport-info",
    "transport-replace",
    "transport-accept",
    "content-add",
    "content-remove",
    "content-modify",
]
ACTIONS: tuple[str, ...] = get_args(Action)

REASONS = (
    "success",
    "busy",
    "cancel",
    "connectivity-error",
    "decline",
    "expired",
    "failed-application",
    "failed-transport",
    "general-error",
    "gone",
    "incompatible-parameters",
    "media-error",
    "security-error",
    "timeout",
    "unsupported-applications",
    "unsupported-transports",
    "alternative-session",
)
"""XEP-0166 reason conditions. Jicofo moves a participant with ``success`` + text ``moving``."""


class JingleError(ValueError):
    """Malformed Jingle: ``where`` names the element/attribute (``content[1]/transport@ufrag``)."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


# --------------------------------------------------------------------------------------- models


@dataclass
class Source:
    """A media source (XEP-0339 ``<source/>``): one SSRC, its Jitsi name and owner (occupant JID)."""

    ssrc: int
    name: str | None = None
    owner: str | None = None
    msid: str | None = None
    video_type: str | None = None
    """Jitsi's ``videoType`` attribute: ``camera`` or ``desktop`` (a screen share)."""


VIDEO_TYPES = frozenset({"camera", "desktop", "desktop_high_fps"})


@dataclass
class RtpDescription:
    """``<description xmlns='urn:xmpp:jingle:apps:rtp:1'/>`` of one content."""

    media: str
    payload_types: list[PayloadType] = field(default_factory=list)
    hdrexts: list[RtpHdrExt] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    ssrc_groups: list[SsrcGroup] = field(default_factory=list)
    rtcp_mux: bool = False


@dataclass
class Transport:
    """``<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/>`` (ICE, DTLS, Jitsi/Parley extras)."""

    ufrag: str | None = None
    pwd: str | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    rtcp_mux: bool = False
    web_socket: str | None = None
    ice_lite: bool = False
    sctp_port: int | None = None


@dataclass
class JingleContent:
    name: str
    creator: str = "initiator"
    senders: str | None = "both"
    description: RtpDescription | None = None
    transport: Transport | None = None


@dataclass
class JingleReason:
    condition: str
    text: str | None = None


@dataclass
class Jingle:
    """One ``<jingle/>`` element."""

    action: Action
    sid: str
    initiator: str | None = None
    responder: str | None = None
    contents: list[JingleContent] = field(default_factory=list)
    bundle: list[str] | None = None
    reason: JingleReason | None = None
    # session-info from a participant: ``<ice-state xmlns='http://jitsi.org/protocol/focus'>failed``
    ice_state: str | None = None
    # ``<bridge-session xmlns='http://jitsi.org/protocol/focus' id=... region=... restart=.../>``:
    # which bridge placement (Jicofo puts it in offers); a client's session-terminate with
    # ``restart='true'`` asks for a new offer (after an ICE failure)
    bridge_session: str | None = None
    bridge_session_region: str | None = None
    bridge_session_restart: bool = False

    def content(self, name: str) -> JingleContent | None:
        for content in self.contents:
            if content.name == name:
                return content
        return None

    def transport(self) -> Transport | None:
        """The first content's transport: with BUNDLE every content carries the same one."""
        for content in self.contents:
            if content.transport is not None:
                return content.transport
        return None

    def sources(self) -> dict[str, list[Source]]:
        """``{media: [sources]}`` over all contents."""
        out: dict[str, list[Source]] = {}
        for content in self.contents:
            if content.description is not None and content.description.sources:
                out.setdefault(content.description.media, []).extend(content.description.sources)
        return out


# ------------------------------------------------------------------------------------- XML out


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _sub(parent: ET.Element, ns: str, tag: str, **attrs: object) -> ET.Element:
    return ET.SubElement(
        parent, _q(ns, tag), {k.replace("_", "-"): str(v) for k, v in attrs.items() if v is not None}
    )


def _payload_type_el(parent: ET.Element, pt: PayloadType) -> None:
    el = _sub(
        parent,
        NS_RTP,
        "payload-type",
        id=pt.id,
        name=pt.name,
        clockrate=pt.clockrate,
        channels=pt.channels,
    )
    for name, value in pt.parameters.items():  # a nameless one (RED's ``111/111``) has no name
        _sub(el, NS_RTP, "parameter", name=name or None, value=value)
    for fb in pt.rtcp_fbs or ():
        _sub(el, NS_RTCP_FB, "rtcp-fb", type=fb.type, subtype=fb.subtype)


def _description_el(parent: ET.Element, desc: RtpDescription) -> None:
    el = _sub(parent, NS_RTP, "description", media=desc.media)
    for pt in desc.payload_types:
        _payload_type_el(el, pt)
    for ext in desc.hdrexts:
        _sub(el, NS_HDREXT, "rtp-hdrext", id=ext.id, uri=ext.uri)
    if desc.rtcp_mux:
        _sub(el, NS_RTP, "rtcp-mux")
    for src in desc.sources:
        s = _sub(el, NS_SSMA, "source", ssrc=src.ssrc, name=src.name)
        if src.video_type:
            s.set("videoType", src.video_type)
        if src.msid:
            _sub(s, NS_SSMA, "parameter", name="msid", value=src.msid)
        if src.owner:
            _sub(s, NS_JITMEET, "ssrc-info", owner=src.owner)
    for group in desc.ssrc_groups:
        g = _sub(el, NS_SSMA, "ssrc-group", semantics=group.semantics)
        for ssrc in group.sources:
            _sub(g, NS_SSMA, "source", ssrc=ssrc)


def _transport_el(parent: ET.Element, t: Transport) -> None:
    el = _sub(parent, NS_ICE_UDP, "transport", ufrag=t.ufrag, pwd=t.pwd)
    if t.web_socket:
        _sub(el, NS_COLIBRI, "web-socket", url=t.web_socket)
    if t.ice_lite:
        _sub(el, NS_COLIBRI, "ice-lite")
    if t.rtcp_mux:
        _sub(el, NS_ICE_UDP, "rtcp-mux")
    if t.sctp_port is not None:
        _sub(el, NS_SCTP, "sctpmap", number=t.sctp_port, protocol="webrtc-datachannel", streams=1024)
    for fp in t.fingerprints:
        f = _sub(el, NS_DTLS, "fingerprint", hash=fp.hash, setup=fp.setup)
        f.text = fp.fingerprint
    for c in t.candidates:
        _sub(
            el,
            NS_ICE_UDP,
            "candidate",
            component=c.component,
            foundation=c.foundation,
            generation=c.generation,
            id=c.id,
            ip=c.ip,
            network=c.network,
            port=c.port,
            priority=c.priority,
            protocol=c.protocol,
            type=c.type,
            tcptype=c.tcptype,
            rel_addr=c.rel_addr,
            rel_port=c.rel_port,
        )


def to_element(jingle: Jingle) -> ET.Element:
    """The ``<jingle xmlns='urn:xmpp:jingle:1'/>`` element (to append to an ``<iq type='set'/>``)."""
    root = ET.Element(_q(NS_JINGLE, "jingle"), {"action": jingle.action, "sid": jingle.sid})
    if jingle.initiator:
        root.set("initiator", jingle.initiator)
    if jingle.responder:
        root.set("responder", jingle.responder)
    for content in jingle.contents:
        el = _sub(
            root, NS_JINGLE, "content", creator=content.creator, name=content.name, senders=content.senders
        )
        if content.description is not None:
            _description_el(el, content.description)
        if content.transport is not None:
            _transport_el(el, content.transport)
    if jingle.bundle:
        group = _sub(root, NS_GROUPING, "group", semantics="BUNDLE")
        for name in jingle.bundle:
            _sub(group, NS_GROUPING, "content", name=name)
    if jingle.ice_state is not None:
        _sub(root, NS_FOCUS, "ice-state").text = jingle.ice_state
    if jingle.bridge_session is not None:
        attributes = {"id": jingle.bridge_session}
        if jingle.bridge_session_region:
            attributes["region"] = jingle.bridge_session_region
        if jingle.bridge_session_restart:
            attributes["restart"] = "true"
        _sub(root, NS_FOCUS, "bridge-session", **attributes)
    if jingle.reason is not None:
        reason = _sub(root, NS_JINGLE, "reason")
        _sub(reason, NS_JINGLE, jingle.reason.condition)
        if jingle.reason.text:
            _sub(reason, NS_JINGLE, "text").text = jingle.reason.text
    return root


def to_xml(jingle: Jingle) -> str:
    return ET.tostring(to_element(jingle), encoding="unicode")


# -------------------------------------------------------------------------------------- XML in


def _attr(el: ET.Element, name: str, where: str) -> str:
    value = el.get(name)
    if value is None or value == "":
        raise JingleError(f"{where}@{name}", "missing")
    return value


def _int(el: ET.Element, name: str, where: str, default: int | None = None) -> int:
    raw = el.get(name)
    if raw is None or raw == "":
        if default is None:
            raise JingleError(f"{where}@{name}", "missing")
        return default
    try:
        return int(raw)
    except ValueError:
        raise JingleError(f"{where}@{name}", f"not an integer: {raw!r}") from None


def _model(cls, where: str, **values):  # type: ignore[no-untyped-def]
    try:
        return cls(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise JingleError(f"{where}@{loc.replace('_', '-')}", first["msg"]) from None


def _parse_payload_type(el: ET.Element, where: str) -> PayloadType:
    params = {p.get("name", ""): p.get("value", "") for p in el.findall(_q(NS_RTP, "parameter"))}
    fbs = [
        _model(RtcpFb, f"{where}/rtcp-fb", type=fb.get("type"), subtype=fb.get("subtype"))
        for fb in el.findall(_q(NS_RTCP_FB, "rtcp-fb"))
    ]
    return _model(
        PayloadType,
        where,
        id=_int(el, "id", where),
        name=el.get("name"),
        clockrate=_int(el, "clockrate", where, 0),
        channels=_int(el, "channels", where) if el.get("channels") else None,
        parameters=params,
        rtcp_fbs=fbs or None,
    )


def _parse_description(el: ET.Element, where: str) -> RtpDescription:
    media = _attr(el, "media", where)
    desc = RtpDescription(media=media)
    for i, pt in enumerate(el.findall(_q(NS_RTP, "payload-type"))):
        desc.payload_types.append(_parse_payload_type(pt, f"{where}/payload-type[{i}]"))
    for i, ext in enumerate(el.findall(_q(NS_HDREXT, "rtp-hdrext"))):
        w = f"{where}/rtp-hdrext[{i}]"
        desc.hdrexts.append(_model(RtpHdrExt, w, id=_int(ext, "id", w), uri=ext.get("uri")))
    desc.rtcp_mux = el.find(_q(NS_RTP, "rtcp-mux")) is not None
    for i, src in enumerate(el.findall(_q(NS_SSMA, "source"))):
        w = f"{where}/source[{i}]"
        ssrc = _int(src, "ssrc", w)
        if not 0 <= ssrc < 2**32:
            raise JingleError(f"{w}@ssrc", f"out of range: {ssrc}")
        info = src.find(_q(NS_JITMEET, "ssrc-info"))
        msid = None
        for p in src.findall(_q(NS_SSMA, "parameter")):
            if p.get("name") == "msid":
                msid = p.get("value")
        desc.sources.append(
            Source(
                ssrc=ssrc,
                name=src.get("name"),
                owner=info.get("owner") if info is not None else None,
                msid=msid,
                video_type=src.get("videoType") if src.get("videoType") in VIDEO_TYPES else None,
            )
        )
    for i, grp in enumerate(el.findall(_q(NS_SSMA, "ssrc-group"))):
        w = f"{where}/ssrc-group[{i}]"
        ssrcs = [
            _int(s, "ssrc", f"{w}/source[{j}]") for j, s in enumerate(grp.findall(_q(NS_SSMA, "source")))
        ]
        desc.ssrc_groups.append(SsrcGroup(semantics=_attr(grp, "semantics", w), sources=ssrcs))
    return desc


def _parse_transport(el: ET.Element, where: str) -> Transport:
    t = Transport(ufrag=el.get("ufrag"), pwd=el.get("pwd"))
    t.rtcp_mux = el.find(_q(NS_ICE_UDP, "rtcp-mux")) is not None
    ws = el.find(_q(NS_COLIBRI, "web-socket"))
    if ws is not None:
        t.web_socket = _attr(ws, "url", f"{where}/web-socket")
    t.ice_lite = el.find(_q(NS_COLIBRI, "ice-lite")) is not None
    sctp = el.find(_q(NS_SCTP, "sctpmap"))
    if sctp is not None:
        t.sctp_port = _int(sctp, "number", f"{where}/sctpmap")
    for i, fp in enumerate(el.findall(_q(NS_DTLS, "fingerprint"))):
        w = f"{where}/fingerprint[{i}]"
        t.fingerprints.append(
            _model(
                Fingerprint,
                w,
                fingerprint=(fp.text or "").strip(),
                hash=fp.get("hash"),
                setup=fp.get("setup"),
            )
        )
    for i, c in enumerate(el.findall(_q(NS_ICE_UDP, "candidate"))):
        w = f"{where}/candidate[{i}]"
        t.candidates.append(
            _model(
                Candidate,
                w,
                foundation=_attr(c, "foundation", w),
                component=_int(c, "component", w),
                protocol=_attr(c, "protocol", w),
                priority=_int(c, "priority", w),
                ip=_attr(c, "ip", w),
                port=_int(c, "port", w),
                type=_attr(c, "type", w),
                generation=_int(c, "generation", w, 0),
                network=_int(c, "network", w, 0),
                id=c.get("id"),
                tcptype=c.get("tcptype"),
                rel_addr=c.get("rel-addr"),
                rel_port=_int(c, "rel-port", w) if c.get("rel-port") else None,
            )
        )
    return t


def parse_element(el: ET.Element) -> Jingle:
    """A ``<jingle xmlns='urn:xmpp:jingle:1'/>`` element to a :class:`Jingle`; :class:`JingleError`
    names what is wrong."""
    if el.tag != _q(NS_JINGLE, "jingle"):
        raise JingleError("jingle", f"not a Jingle element: {el.tag}")
    action = _attr(el, "action", "jingle")
    if action not in ACTIONS:
        raise JingleError("jingle@action", f"unknown action {action!r}")
    jingle = Jingle(
        action=action,  # type: ignore[arg-type]
        sid=_attr(el, "sid", "jingle"),
        initiator=el.get("initiator"),
        responder=el.get("responder"),
    )
    for i, c in enumerate(el.findall(_q(NS_JINGLE, "content"))):
        where = f"content[{i}]"
        content = JingleContent(
            name=_attr(c, "name", where), creator=c.get("creator", "initiator"), senders=c.get("senders")
        )
        desc = c.find(_q(NS_RTP, "description"))
        if desc is not None:
            content.description = _parse_description(desc, f"{where}/description")
        transport = c.find(_q(NS_ICE_UDP, "transport"))
        if transport is not None:
            content.transport = _parse_transport(transport, f"{where}/transport")
        jingle.contents.append(content)
    group = el.find(_q(NS_GROUPING, "group"))
    if group is not None and group.get("semantics") == "BUNDLE":
        jingle.bundle = [_attr(c, "name", "group/content") for c in group.findall(_q(NS_GROUPING, "content"))]
    ice_state = el.find(_q(NS_FOCUS, "ice-state"))
    if ice_state is not None:
        jingle.ice_state = (ice_state.text or "").strip()
    bridge_session = el.find(_q(NS_FOCUS, "bridge-session"))
    if bridge_session is not None:
        jingle.bridge_session = bridge_session.get("id")
        jingle.bridge_session_region = bridge_session.get("region")
        jingle.bridge_session_restart = bridge_session.get("restart") == "true"
    reason = el.find(_q(NS_JINGLE, "reason"))
    if reason is not None:
        condition = next(
            (child.tag.split("}")[-1] for child in reason if child.tag != _q(NS_JINGLE, "text")), None
        )
        if condition is None:
            raise JingleError("reason", "no condition element")
        text = reason.find(_q(NS_JINGLE, "text"))
        jingle.reason = JingleReason(condition, text.text if text is not None else None)
    return jingle


def parse_xml(text: str | bytes) -> Jingle:
    """Parse ``<jingle/>`` XML text (untrusted input: defusedxml)."""
    try:
        el = SafeET.fromstring(text)
    except ET.ParseError as exc:
        raise JingleError("", f"malformed XML: {exc}") from None
    return parse_element(el)


# ---------------------------------------------------------------------------------- Colibri


def transport_from_colibri(
    t: colibri.IceUdpTransport, *, ice_lite: bool = False, sctp_port: int | None = None
) -> Transport:
    """The bridge's channel-bundle transport as the Jingle transport of an offer."""
    return Transport(
        ufrag=t.ufrag,
        pwd=t.pwd,
        fingerprints=list(t.fingerprints or ()),
        candidates=list(t.candidates or ()),
        rtcp_mux=bool(t.rtcp_mux),
        web_socket=t.web_socket,
        ice_lite=ice_lite,
        sctp_port=sctp_port,
    )


def transport_to_colibri(t: Transport) -> colibri.IceUdpTransport:
    """A participant's answered transport as the Colibri channel-bundle transport to PATCH."""
    return colibri.IceUdpTransport(
        ufrag=t.ufrag,
        pwd=t.pwd,
        rtcp_mux=t.rtcp_mux or None,
        fingerprints=list(t.fingerprints),
        candidates=list(t.candidates),
    )


def channel_update(desc: RtpDescription) -> dict[str, object]:
    """The Colibri channel fields a participant's answered description sets: ``sources``,
    ``ssrc_groups``, ``payload_types``, ``rtp_hdrexts`` (keyword arguments of
    :class:`colibri.Channel`)."""
    return {
        "sources": [s.ssrc for s in desc.sources],
        "ssrc_groups": list(desc.ssrc_groups),
        "payload_types": list(desc.payload_types),
        "rtp_hdrexts": list(desc.hdrexts),
    }


def sources_by_owner(jingle: Jingle) -> dict[str, dict[str, list[Source]]]:
    """``{owner: {media: [sources]}}`` of a source-add/source-remove/session-initiate."""
    out: dict[str, dict[str, list[Source]]] = {}
    for media, sources in jingle.sources().items():
        for src in sources:
            out.setdefault(src.owner or "", {}).setdefault(media, []).append(src)
    return out


def groups_for(ssrcs: Iterable[int], groups: Iterable[SsrcGroup]) -> list[SsrcGroup]:
    """The groups whose SSRCs all belong to ``ssrcs``."""
    wanted = set(ssrcs)
    return [g for g in groups if g.sources and set(g.sources) <= wanted]
