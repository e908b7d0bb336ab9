"""The bridge's conference model and Colibri request semantics, without I/O.

:class:`ConferenceBook` holds every conference, its endpoints (one per channel-bundle) and their
channels/SCTP connections. A Colibri POST/PATCH is handled in two steps so nothing is ever half
applied:

1. :meth:`ConferenceBook.prepare` validates the whole request against a *copy* of the conference
   and returns a :class:`Plan`: the new conference state plus the media effects it needs
   (create endpoint, set remote transport, set sources, expire endpoint). Any problem raises
   :class:`ColibriRequestError` naming the field (-> HTTP 400) or :class:`UnknownConference`
   (-> 404), and the book is unchanged.
2. The I/O layer carries the effects out on the media engine (storing each created endpoint's
   local transport in the plan) and then calls :meth:`ConferenceBook.commit`.

Expiry (Colibri REST v1 / jvb semantics): ``expire`` is seconds of inactivity. A channel's activity is the
later of the last Colibri request naming it and the last packet from its endpoint (the media
engine knows that). ``expire: 0`` frees the channel in the same request. An endpoint whose
channels and SCTP connections are all gone is freed; a conference without endpoints is freed
after ``conference_idle_timeout`` seconds without requests. :meth:`ConferenceBook.sweep` applies
this at a given monotonic time.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from services.bridge.media.model import LocalTransport, MediaSources, RemoteTransport
from services.common import colibri

from . import convert

MAX_REMOTE_CANDIDATES = 32
"""Candidates of one endpoint kept from its answer and later transport-info updates."""

ActivityFn = Callable[[str, str], float | None]
"""(conference id, endpoint id) -> monotonic time of the endpoint's last packet, or None."""

WebSocketUrlFn = Callable[[str, str, str], str | None]
"""(conference id, endpoint id, ICE pwd) -> the Colibri WebSocket URL to advertise, or None."""


class ColibriRequestError(ValueError):
    """A request that is well-formed JSON but asks for something invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownConference(KeyError):
    def __init__(self, conference_id: str) -> None:
        self.conference_id = conference_id
        super().__init__(conference_id)

    def __str__(self) -> str:
        return f"no conference with id {self.conference_id!r}"


def new_id() -> str:
    """16 hex digits, like jvb's conference and channel ids."""
    return secrets.token_hex(8)


@dataclass
class ChannelRecord:
    id: str
    content: str  # "audio" | "video"
    endpoint_id: str
    expire: int
    last_touched: float
    initiator: bool | None = None
    direction: str = "sendrecv"
    last_n: int | None = None
    rtp_level_relay_type: str = "translator"
    receive_simulcast_layer: int | None = None
    sources: list[int] = field(default_factory=list)
    ssrc_groups: list[colibri.SsrcGroup] = field(default_factory=list)
    payload_types: list[colibri.PayloadType] = field(default_factory=list)
    rtp_hdrexts: list[colibri.RtpHdrExt] = field(default_factory=list)
    mixed_ssrc: int | None = None  # the bridge's mixed audio stream, for a mixer channel

    def to_colibri(self, bundle_id: str, expire: int | None = None) -> colibri.Channel:
        return colibri.Channel(
            id=self.id,
            endpoint=self.endpoint_id,
            channel_bundle_id=bundle_id,
            expire=self.expire if expire is None else expire,
            initiator=self.initiator,
            direction=self.direction,  # type: ignore[arg-type]
            last_n=self.last_n,
            rtp_level_relay_type=self.rtp_level_relay_type,  # type: ignore[arg-type]
            receive_simulcast_layer=self.receive_simulcast_layer,
            sources=list(self.sources) or ([self.mixed_ssrc] if self.mixed_ssrc is not None else []),
            ssrc_groups=list(self.ssrc_groups) or None,
            payload_types=list(self.payload_types) or None,
            rtp_hdrexts=list(self.rtp_hdrexts) or None,
        )


@dataclass
class SctpRecord:
    id: str
    endpoint_id: str
    expire: int
    last_touched: float
    initiator: bool | None = None
    port: int = 5000

    def to_colibri(self, bundle_id: str, expire: int | None = None) -> colibri.SctpConnection:
        return colibri.SctpConnection(
            id=self.id,
            endpoint=self.endpoint_id,
            channel_bundle_id=bundle_id,
            expire=self.expire if expire is None else expire,
            initiator=self.initiator,
            port=self.port,
        )


@dataclass
class EndpointRecord:
    """One endpoint = one channel-bundle = one media-engine endpoint (one ICE/DTLS transport)."""

    id: str
    bundle_id: str
    created: float
    channels: dict[str, ChannelRecord] = field(default_factory=dict)
    sctp: dict[str, SctpRecord] = field(default_factory=dict)
    local: LocalTransport | None = None
    remote: RemoteTransport | None = None
    state: str = "new"  # new -> connected | failed

    @property
    def empty(self) -> bool:
        return not self.channels and not self.sctp

    @property
    def sctp_port(self) -> int | None:
        """The port of the endpoint's SCTP connection (None without one)."""
        return next((sc.port for sc in self.sctp.values()), None)

    def sources(self) -> MediaSources:
        def described(
            content: str,
        ) -> Iterator[
            tuple[list[int], list[colibri.SsrcGroup], list[colibri.PayloadType], list[colibri.RtpHdrExt]]
        ]:
            for ch in self.channels.values():
                if ch.content == content:
                    yield ch.sources, ch.ssrc_groups, ch.payload_types, ch.rtp_hdrexts

        # Jicofo mutes over Colibri by making the sender's channel receive-only
        muted = {ch.content for ch in self.channels.values() if ch.direction in ("recvonly", "inactive")}
        return convert.media_sources(described("audio"), described("video"), muted)


@dataclass
class ConferenceRecord:
    id: str
    created: float
    last_touched: float
    name: str | None = None
    endpoints: dict[str, EndpointRecord] = field(default_factory=dict)

    def endpoint_of_bundle(self, bundle_id: str) -> EndpointRecord | None:
        for ep in self.endpoints.values():
            if ep.bundle_id == bundle_id:
                return ep
        return None

    def find_channel(self, channel_id: str) -> ChannelRecord | None:
        for ep in self.endpoints.values():
            if channel_id in ep.channels:
                return ep.channels[channel_id]
        return None

    def find_sctp(self, sctp_id: str) -> SctpRecord | None:
        for ep in self.endpoints.values():
            if sctp_id in ep.sctp:
                return ep.sctp[sctp_id]
        return None


# --- media effects a plan asks the I/O layer to carry out, in order -------------------------------


@dataclass(frozen=True)
class CreateEndpoint:
    endpoint_id: str


@dataclass(frozen=True)
class SetRemoteTransport:
    endpoint_id: str
    remote: RemoteTransport


@dataclass(frozen=True)
class SetSources:
    endpoint_id: str
    sources: MediaSources


@dataclass(frozen=True)
class ExpireEndpoint:
    endpoint_id: str


@dataclass(frozen=True)
class SetColibriLastN:
    """The ``last-n`` of the endpoint's video channel (-1 = unlimited)."""

    endpoint_id: str
    last_n: int


@dataclass(frozen=True)
class SetAudioMixing:
    """The endpoint's audio channel became a mixer channel (or a translator one again)."""

    endpoint_id: str
    mixed: bool


@dataclass(frozen=True)
class SetSctp:
    """The endpoint's SCTP connection (data channel) appeared, with its port, or went (``None``)."""

    endpoint_id: str
    port: int | None


Effect = (
    CreateEndpoint
    | SetRemoteTransport
    | SetSources
    | SetColibriLastN
    | SetAudioMixing
    | ExpireEndpoint
    | SetSctp
)


@dataclass
class Plan:
    """The outcome of a validated request, before the media engine is touched."""

    conference: ConferenceRecord
    new_conference: bool
    effects: list[Effect]
    touched_channels: list[str]  # channel and sctp ids named or created by the request, in order
    touched_bundles: list[str]
    freed: dict[str, colibri.Channel | colibri.SctpConnection]  # id -> last state, for the response
    freed_contents: dict[str, str]  # id -> content name
    owned: set[str] = field(default_factory=set)  # endpoints already copied for this plan
    policy: dict[str, list[SetColibriLastN | SetAudioMixing]] = field(default_factory=dict)

    def set_mixed_ssrc(self, endpoint_id: str, ssrc: int | None) -> None:
        for ch in self.conference.endpoints[endpoint_id].channels.values():
            if ch.content == "audio":
                ch.mixed_ssrc = ssrc if ch.rtp_level_relay_type == "mixer" else None

    def own(self, endpoint_id: str) -> EndpointRecord:
        """The plan's private copy of an endpoint (copy-on-write: the book's stays untouched)."""
        ep = self.conference.endpoints[endpoint_id]
        if endpoint_id not in self.owned:
            ep = copy.copy(ep)
            ep.channels = {k: copy.copy(v) for k, v in ep.channels.items()}
            ep.sctp = {k: copy.copy(v) for k, v in ep.sctp.items()}
            self.conference.endpoints[endpoint_id] = ep
            self.owned.add(endpoint_id)
        return ep

    def set_local_transport(self, endpoint_id: str, local: LocalTransport) -> None:
        self.conference.endpoints[endpoint_id].local = local


@dataclass(frozen=True)
class SweepResult:
    expired_endpoints: list[tuple[str, str]]
    expired_conferences: list[str]


class ConferenceBook:
    """All conferences of the bridge. Pure state: time comes in as arguments."""

    def __init__(self, default_expire: int = 60, conference_idle_timeout: float = 60.0) -> None:
        self.default_expire = default_expire
        self.conference_idle_timeout = conference_idle_timeout
        self.conferences: dict[str, ConferenceRecord] = {}

    # --- queries ---------------------------------------------------------------------------------

    def get(self, conference_id: str) -> ConferenceRecord:
        try:
            return self.conferences[conference_id]
        except KeyError:
            raise UnknownConference(conference_id) from None

    def endpoint(self, conference_id: str, endpoint_id: str) -> EndpointRecord | None:
        conf = self.conferences.get(conference_id)
        return conf.endpoints.get(endpoint_id) if conf else None

    def endpoint_count(self) -> int:
        return sum(len(c.endpoints) for c in self.conferences.values())

    def largest_conference(self) -> int:
        return max((len(c.endpoints) for c in self.conferences.values()), default=0)

    def conference_sizes(self) -> list[int]:
        return [len(c.endpoints) for c in self.conferences.values()]

    def channel_count(self) -> int:
        return sum(
            len(e.channels) + len(e.sctp) for c in self.conferences.values() for e in c.endpoints.values()
        )

    # --- requests --------------------------------------------------------------------------------

    def prepare(self, conference_id: str | None, request: colibri.Conference, now: float) -> Plan:
        """Validate a POST (``conference_id=None``) or PATCH and compute its plan. Book unchanged."""
        if conference_id is None:
            if request.id is not None:
                raise ColibriRequestError("id", "must not be given when creating a conference")
            cid = new_id()
            while cid in self.conferences:
                cid = new_id()
            conf = ConferenceRecord(id=cid, created=now, last_touched=now, name=request.name)
            new = True
        else:
            if request.id is not None and request.id != conference_id:
                raise ColibriRequestError("id", f"{request.id!r} does not match the conference in the URL")
            conf = copy.copy(self.get(conference_id))
            conf.endpoints = dict(conf.endpoints)  # endpoints are copied when the plan touches them
            conf.last_touched = now
            if request.name is not None:
                conf.name = request.name
            new = False
        before = set(conf.endpoints)
        plan = Plan(conf, new, [], [], [], {}, {})
        sources_changed: set[str] = set()
        seen_contents: set[str] = set()
        for ci, content in enumerate(request.contents or []):
            where = f"contents[{ci}]"
            if content.name in seen_contents:
                raise ColibriRequestError(f"{where}.name", f"content {content.name!r} given twice")
            seen_contents.add(content.name)
            if content.name == "data":
                if content.channels:
                    raise ColibriRequestError(f"{where}.channels", "the data content has sctpconnections")
                for si, sctp in enumerate(content.sctpconnections or []):
                    self._apply_sctp(plan, sctp, f"{where}.sctpconnections[{si}]", now)
            else:
                if content.sctpconnections:
                    raise ColibriRequestError(f"{where}.sctpconnections", "only the data content has them")
                for hi, ch in enumerate(content.channels or []):
                    self._apply_channel(
                        plan, content.name, ch, f"{where}.channels[{hi}]", now, sources_changed
                    )
        remotes: list[SetRemoteTransport] = []
        for bi, bundle in enumerate(request.channel_bundles or []):
            where = f"channel-bundles[{bi}]"
            ep = conf.endpoint_of_bundle(bundle.id)
            if ep is None:
                raise ColibriRequestError(
                    f"{where}.id", f"no channel or sctpconnection uses bundle {bundle.id!r}"
                )
            ep = plan.own(ep.id)
            if bundle.id not in plan.touched_bundles:
                plan.touched_bundles.append(bundle.id)
            t = bundle.transport
            if t is None or not (t.ufrag or t.pwd or t.fingerprints or t.candidates):
                continue  # an allocation request: only asks for the bridge's transport
            if not t.fingerprints and t.candidates and ep.remote is not None:
                # candidates the endpoint found later (Jingle transport-info): added to its answer
                remote = convert.add_candidates(ep.remote, t, MAX_REMOTE_CANDIDATES)
                if ep.remote != remote:
                    ep.remote = remote
                    remotes.append(SetRemoteTransport(ep.id, remote))
                continue
            if not t.ufrag:
                raise ColibriRequestError(f"{where}.transport.ufrag", "required with pwd/fingerprints")
            if not t.pwd:
                raise ColibriRequestError(f"{where}.transport.pwd", "required with ufrag/fingerprints")
            if not t.fingerprints:
                raise ColibriRequestError(
                    f"{where}.transport.fingerprints",
                    "at least one DTLS fingerprint (candidates alone only after the endpoint's answer)",
                )
            remote = convert.remote_transport(t)
            if ep.remote != remote:
                ep.remote = remote
                remotes.append(SetRemoteTransport(ep.id, remote))
        # Endpoints left without channels are freed; brand-new empty ones never reach the engine.
        for eid in list(conf.endpoints):
            ep = conf.endpoints[eid]
            if ep.empty:
                del conf.endpoints[eid]
                if eid in before:
                    plan.effects.append(ExpireEndpoint(eid))
        created = [CreateEndpoint(eid) for eid in conf.endpoints if eid not in before]
        sources = [
            SetSources(eid, conf.endpoints[eid].sources())
            for eid in sorted(sources_changed)
            if eid in conf.endpoints
        ]
        remotes = [r for r in remotes if r.endpoint_id in conf.endpoints]
        policy = [e for eid, changes in plan.policy.items() if eid in conf.endpoints for e in changes]
        original = None if new else self.conferences[conf.id]
        sctp_changes = [
            SetSctp(eid, port)
            for eid, ep in conf.endpoints.items()
            if (port := ep.sctp_port)
            != (original.endpoints[eid].sctp_port if original and eid in original.endpoints else None)
        ]
        plan.effects = [*created, *remotes, *sources, *policy, *plan.effects, *sctp_changes]
        return plan

    def _endpoint_for_new(
        self, plan: Plan, endpoint: str | None, bundle: str | None, fallback: str, where: str, now: float
    ) -> EndpointRecord:
        conf = plan.conference
        eid = endpoint or bundle or fallback
        bid = bundle or eid
        ep = conf.endpoints.get(eid)
        if ep is not None:
            ep = plan.own(eid)
            if ep.bundle_id != bid:
                raise ColibriRequestError(
                    f"{where}.channel-bundle-id", f"endpoint {eid!r} already uses bundle {ep.bundle_id!r}"
                )
            return ep
        other = conf.endpoint_of_bundle(bid)
        if other is not None:
            raise ColibriRequestError(
                f"{where}.channel-bundle-id", f"bundle {bid!r} belongs to endpoint {other.id!r}"
            )
        ep = EndpointRecord(id=eid, bundle_id=bid, created=now)
        plan.owned.add(eid)
        conf.endpoints[eid] = ep
        return ep

    def _apply_channel(
        self, plan: Plan, content: str, ch: colibri.Channel, where: str, now: float, sources_changed: set[str]
    ) -> None:
        conf = plan.conference
        if ch.id is not None:
            rec = conf.find_channel(ch.id)
            if rec is None and ch.expire == 0:
                return  # already gone (its endpoint failed or expired): expiring it again is done
            if rec is None or rec.content != content:
                raise ColibriRequestError(f"{where}.id", f"no {content} channel {ch.id!r} in this conference")
            ep = plan.own(rec.endpoint_id)
            rec = ep.channels[rec.id]
            if ch.endpoint is not None and ch.endpoint != rec.endpoint_id:
                raise ColibriRequestError(f"{where}.endpoint", f"channel belongs to {rec.endpoint_id!r}")
            if ch.channel_bundle_id is not None and ch.channel_bundle_id != ep.bundle_id:
                raise ColibriRequestError(
                    f"{where}.channel-bundle-id", f"channel uses bundle {ep.bundle_id!r}"
                )
        else:
            cid = new_id()
            ep = self._endpoint_for_new(plan, ch.endpoint, ch.channel_bundle_id, cid, where, now)
            rec = ChannelRecord(
                id=cid, content=content, endpoint_id=ep.id, expire=self.default_expire, last_touched=now
            )
            ep.channels[cid] = rec
        rec.last_touched = now
        if ch.direction is not None and ch.direction != rec.direction:
            sources_changed.add(ep.id)  # a (force-)mute or unmute reaches the media engine
        for name in (
            "expire",
            "initiator",
            "direction",
            "last_n",
            "rtp_level_relay_type",
            "receive_simulcast_layer",
        ):
            value = getattr(ch, name)
            if value is not None:
                setattr(rec, name, value)
        for name in ("sources", "ssrc_groups", "payload_types", "rtp_hdrexts"):
            value = getattr(ch, name)
            if value is not None:
                setattr(rec, name, list(value))
                sources_changed.add(ep.id)
        changes = plan.policy.setdefault(ep.id, [])
        if content == "video" and ch.last_n is not None:
            changes.append(SetColibriLastN(ep.id, ch.last_n))
        if content == "audio" and ch.rtp_level_relay_type is not None:
            changes.append(SetAudioMixing(ep.id, ch.rtp_level_relay_type == "mixer"))
        plan.touched_channels.append(rec.id)
        if ep.bundle_id not in plan.touched_bundles:
            plan.touched_bundles.append(ep.bundle_id)
        if rec.expire == 0:
            del ep.channels[rec.id]
            plan.freed[rec.id] = rec.to_colibri(ep.bundle_id, expire=0)
            plan.freed_contents[rec.id] = content
            sources_changed.add(ep.id)

    def _apply_sctp(self, plan: Plan, sc: colibri.SctpConnection, where: str, now: float) -> None:
        conf = plan.conference
        if sc.id is not None:
            rec = conf.find_sctp(sc.id)
            if rec is None and sc.expire == 0:
                return  # already gone with its endpoint
            if rec is None:
                raise ColibriRequestError(f"{where}.id", f"no sctpconnection {sc.id!r} in this conference")
            ep = plan.own(rec.endpoint_id)
            rec = ep.sctp[rec.id]
            if sc.endpoint is not None and sc.endpoint != rec.endpoint_id:
                raise ColibriRequestError(
                    f"{where}.endpoint", f"sctpconnection belongs to {rec.endpoint_id!r}"
                )
        else:
            sid = new_id()
            ep = self._endpoint_for_new(plan, sc.endpoint, sc.channel_bundle_id, sid, where, now)
            rec = SctpRecord(id=sid, endpoint_id=ep.id, expire=self.default_expire, last_touched=now)
            ep.sctp[sid] = rec
        rec.last_touched = now
        for name in ("expire", "initiator", "port"):
            value = getattr(sc, name)
            if value is not None:
                setattr(rec, name, value)
        plan.touched_channels.append(rec.id)
        if ep.bundle_id not in plan.touched_bundles:
            plan.touched_bundles.append(ep.bundle_id)
        if rec.expire == 0:
            del ep.sctp[rec.id]
            plan.freed[rec.id] = rec.to_colibri(ep.bundle_id, expire=0)
            plan.freed_contents[rec.id] = "data"

    def commit(self, plan: Plan) -> ConferenceRecord:
        self.conferences[plan.conference.id] = plan.conference
        return plan.conference

    # --- expiry and engine events ----------------------------------------------------------------

    def remove_endpoint(self, conference_id: str, endpoint_id: str) -> bool:
        conf = self.conferences.get(conference_id)
        if conf is None or endpoint_id not in conf.endpoints:
            return False
        del conf.endpoints[endpoint_id]
        return True

    def remove_conference(self, conference_id: str) -> ConferenceRecord | None:
        return self.conferences.pop(conference_id, None)

    def set_endpoint_state(self, conference_id: str, endpoint_id: str, state: str) -> None:
        ep = self.endpoint(conference_id, endpoint_id)
        if ep is not None:
            ep.state = state

    def sweep(self, now: float, activity: ActivityFn) -> SweepResult:
        """Free what has been inactive longer than its ``expire``; returns what went away."""
        gone_eps: list[tuple[str, str]] = []
        gone_confs: list[str] = []
        for conf in list(self.conferences.values()):
            for ep in list(conf.endpoints.values()):
                media = activity(conf.id, ep.id) or 0.0
                for cid, ch in list(ep.channels.items()):
                    if now - max(ch.last_touched, media) >= ch.expire:
                        del ep.channels[cid]
                for sid, sc in list(ep.sctp.items()):
                    if now - max(sc.last_touched, media) >= sc.expire:
                        del ep.sctp[sid]
                if ep.empty:
                    del conf.endpoints[ep.id]
                    gone_eps.append((conf.id, ep.id))
                    conf.last_touched = max(conf.last_touched, now - self.conference_idle_timeout)
            if not conf.endpoints and now - conf.last_touched >= self.conference_idle_timeout:
                del self.conferences[conf.id]
                gone_confs.append(conf.id)
        return SweepResult(gone_eps, gone_confs)


# --- rendering -------------------------------------------------------------------------------------


def render(
    conf: ConferenceRecord, ws_url: WebSocketUrlFn | None = None, plan: Plan | None = None
) -> colibri.Conference:
    """The Colibri JSON of a conference: everything (GET), or what a request touched (POST/PATCH)."""
    only = set(plan.touched_channels) if plan else None
    bundles = plan.touched_bundles if plan else [ep.bundle_id for ep in conf.endpoints.values()]
    contents: dict[str, colibri.Content] = {}

    def content(name: str) -> colibri.Content:
        if name not in contents:
            contents[name] = colibri.Content(name=name)  # type: ignore[arg-type]
        return contents[name]

    for ep in conf.endpoints.values():
        for ch in ep.channels.values():
            if only is None or ch.id in only:
                c = content(ch.content)
                c.channels = [*(c.channels or []), ch.to_colibri(ep.bundle_id)]
        for sc in ep.sctp.values():
            if only is None or sc.id in only:
                c = content("data")
                c.sctpconnections = [*(c.sctpconnections or []), sc.to_colibri(ep.bundle_id)]
    if plan:
        for fid, freed in plan.freed.items():
            c = content(plan.freed_contents[fid])
            if isinstance(freed, colibri.SctpConnection):
                c.sctpconnections = [*(c.sctpconnections or []), freed]
            else:
                c.channels = [*(c.channels or []), freed]
    ordered = [contents[n] for n in colibri.CONTENT_NAMES if n in contents]
    rendered_bundles: list[colibri.ChannelBundle] = []
    for bid in bundles:
        owner = conf.endpoint_of_bundle(bid)
        if owner is None:
            continue
        transport = None
        if owner.local is not None:
            url = ws_url(conf.id, owner.id, owner.local.pwd) if ws_url else None
            transport = convert.local_transport(owner.local, url)
        rendered_bundles.append(colibri.ChannelBundle(id=bid, transport=transport))
    return colibri.Conference(
        id=conf.id,
        name=conf.name,
        contents=ordered or None,
        channel_bundles=rendered_bundles or None,
    )
