"""What the focus does for each conference event, as pure functions returning an :class:`Outbox`.

Each function takes the conference (and the event), updates the conference model, and returns
the messages to send: Jingle IQs (to occupant JIDs) and Colibri PATCH bodies for the conference's
bridge. :mod:`.focus` performs them; here they are decided, and tested without sockets.

Events and what follows:

* ``allocated`` - the bridge answered a participant's allocation: a ``session-initiate`` with the
  bridge's transport and everyone else's sources;
* ``accepted`` - ``session-accept``: the participant's transport and (owner-checked) sources are
  PATCHed to the bridge and announced to the others with ``source-add``;
* ``sources_changed`` - ``source-add``/``source-remove`` from a participant: PATCH, then forward;
* ``left`` - an occupant left: its channels expire, the others get ``source-remove``;
* ``bridge_lost`` - the bridge failed or left: every session ends with ``session-terminate``
  (``success``, ``moving``) and everyone waits for a new allocation;
* ``ice_failed`` - ``session-info`` with ICE failed: expire, terminate (``moving``), re-invite;
* ``transport_info`` - candidates the participant found after its answer: PATCHed to the bridge,
  whose ICE agent checks them (Jicofo relays them the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common import colibri
from services.common.jingle import Jingle

from . import offer
from .conference import Conference, MediaSources, Participant, ParticipantState

MOVING = "moving"


@dataclass(frozen=True)
class OfferSettings:
    initiator: str
    ice_lite: bool = False
    channel_expire: int = 60
    enable_sctp: bool = False
    last_n: int = -1


@dataclass
class Outbox:
    jingle: list[tuple[str, Jingle]] = field(default_factory=list)
    patches: list[colibri.Conference] = field(default_factory=list)

    def extend(self, other: Outbox) -> Outbox:
        self.jingle += other.jingle
        self.patches += other.patches
        return self


def allocation_request(
    conf: Conference, participant: Participant, bridge_id: str, s: OfferSettings
) -> colibri.Conference:
    """The body to send for ``participant`` on ``bridge_id``: a POST creating the conference when it
    is not (yet) on that bridge, else a PATCH of it. Marks the participant INVITING."""
    participant.state = ParticipantState.INVITING
    on_bridge = conf.bridge_id == bridge_id and conf.colibri_id is not None
    return offer.allocation_request(
        participant.endpoint_id,
        colibri_id=conf.colibri_id if on_bridge else None,
        expire=s.channel_expire,
        enable_sctp=s.enable_sctp,
        last_n=s.last_n,
        muted=participant.muted,
        mixer=participant.mixed_audio,
    )


def allocation_failed(participant: Participant) -> None:
    participant.state = ParticipantState.JOINED


def allocated(
    conf: Conference,
    participant: Participant,
    bridge_id: str,
    request: colibri.Conference,
    response: colibri.Conference,
    sid: str,
    s: OfferSettings,
    *,
    region: str | None = None,
) -> Outbox:
    """The bridge's answer to ``request``: place the conference (when the request created it) and
    send the participant its offer. Raises :class:`offer.AllocationError` on an unusable answer."""
    allocation = offer.read_allocation(response, participant.endpoint_id, mixer=participant.mixed_audio)
    if request.id is None:
        conf.bridge_id = bridge_id
        conf.colibri_id = response.id
    participant.channels = allocation.channels
    participant.sid = sid
    participant.state = ParticipantState.INVITED
    participant.invites += 1
    heard = (
        offer.mixed_sources(allocation)
        if participant.mixed_audio
        else conf.sources_of_others(participant.endpoint_id)
    )
    message = offer.session_initiate(sid, s.initiator, allocation, heard, ice_lite=s.ice_lite)
    # the bridge placement, as Jicofo names it: a restart request must name the current one
    message.bridge_session = conf.colibri_id
    message.bridge_session_region = region or None
    return Outbox(jingle=[(participant.occupant_jid, message)])


def _announce(
    conf: Conference, action: str, sources: dict[str, MediaSources], exclude: str
) -> list[tuple[str, Jingle]]:
    out = []
    for other in conf.with_session(exclude=exclude):
        assert other.sid is not None
        out.append((other.occupant_jid, offer.source_update(action, other.sid, sources)))
    return out


def accepted(conf: Conference, participant: Participant, accept: Jingle, s: OfferSettings) -> Outbox:
    """``session-accept``: PATCH the answer, then ``source-add`` to everyone with a session."""
    if participant.state is not ParticipantState.INVITED or conf.colibri_id is None:
        return Outbox()
    participant.sources = offer.owned_sources(accept, participant)
    participant.state = ParticipantState.ACTIVE
    out = Outbox(patches=[offer.accept_patch(conf.colibri_id, participant, accept, s.channel_expire)])
    if participant.has_sources():
        out.jingle = _announce(conf, "source-add", participant.sources, participant.endpoint_id)
    return out


def sources_changed(conf: Conference, participant: Participant, message: Jingle, s: OfferSettings) -> Outbox:
    """A participant's own ``source-add``/``source-remove``: PATCH its channels, forward the change."""
    changed = offer.owned_sources(message, participant)
    if message.action == "source-add":
        known = {src.ssrc for ms in participant.sources.values() for src in ms.sources}
        changed = {
            media: MediaSources(sources=[x for x in ms.sources if x.ssrc not in known], groups=ms.groups)
            for media, ms in changed.items()
        }
        changed = {media: ms for media, ms in changed.items() if ms.sources}
        offer.merge_sources(participant.sources, changed)
    else:
        changed = offer.remove_sources(participant.sources, changed)
    if not changed or conf.colibri_id is None:
        return Outbox()
    return Outbox(
        patches=[offer.sources_patch(conf.colibri_id, participant, s.channel_expire)],
        jingle=_announce(conf, message.action, changed, participant.endpoint_id),
    )


def restart_requested(conf: Conference, participant: Participant, terminate: Jingle) -> Outbox | None:
    """``session-terminate`` with ``<bridge-session restart='true'>`` (lib-jitsi-meet after an ICE
    failure, when the focus advertises ``support-terminate-restart``): the session's channels
    expire and the participant waits for a new offer, which the caller sends. ``None`` when the
    named bridge session is not the current one (a stale request: nothing to restart)."""
    if terminate.bridge_session != conf.colibri_id:
        return None
    return drop_session(conf, participant)


def transport_info(conf: Conference, participant: Participant, message: Jingle) -> Outbox:
    """``transport-info`` from a participant with an accepted session: its new candidates go to
    the bridge. Before the answer (or without candidates) there is nothing to send: the bridge
    learns those addresses from the participant's own checks (peer-reflexive candidates)."""
    if participant.state is not ParticipantState.ACTIVE or conf.colibri_id is None:
        return Outbox()
    patch = offer.transport_patch(conf.colibri_id, participant, message)
    return Outbox(patches=[patch] if patch is not None else [])


def drop_session(conf: Conference, participant: Participant) -> Outbox:
    """Expire a participant's channels and withdraw its sources from the others; back to JOINED."""
    out = Outbox()
    if participant.channels and conf.colibri_id is not None:
        out.patches.append(offer.expire_request(conf.colibri_id, participant))
    if participant.has_sources():
        out.jingle = _announce(conf, "source-remove", participant.sources, participant.endpoint_id)
    participant.reset_session()
    return out


def left(conf: Conference, endpoint_id: str) -> Outbox | None:
    """An occupant left the room. None if it was not a participant."""
    participant = conf.occupant_left(endpoint_id)
    if participant is None:
        return None
    return drop_session(conf, participant)


def bridge_lost(conf: Conference) -> Outbox:
    """The conference's bridge is gone (or forgot the conference): end every session, "moving"."""
    return Outbox(
        jingle=[
            (participant.occupant_jid, offer.session_terminate(sid, "success", MOVING))
            for participant, sid in conf.lose_bridge()
        ]
    )


def ice_failed(conf: Conference, participant: Participant) -> Outbox:
    """The participant's ICE failed: expire, terminate ("moving"); the caller re-invites it."""
    sid = participant.sid
    out = drop_session(conf, participant)
    if sid is not None:
        out.jingle.append((participant.occupant_jid, offer.session_terminate(sid, "success", MOVING)))
    return out


def waiting(conf: Conference) -> list[Participant]:
    """Participants with no session (new, or after a move): they need an allocation."""
    return [p for p in conf.participants.values() if p.state is ParticipantState.JOINED]
