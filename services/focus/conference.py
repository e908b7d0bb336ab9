"""A conference as the focus sees it: one MUC room, one bridge, its participants (pure state).

Participant lifecycle (one Jingle session per bridge placement)::

    JOINED --allocate--> INVITING --session-initiate sent--> INVITED --session-accept--> ACTIVE
       ^                                                                                   |
       +---------------- bridge lost / ICE failed / re-invite (session-terminate "moving") -+

The model is plain data with transitions as methods; the orchestrator (:mod:`.focus`) performs
the I/O (Colibri, Jingle) and calls these. It serializes to JSON for the state store, so a
restarted focus resumes conferences without re-inviting anyone.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from services.common.colibri import SsrcGroup
from services.common.jingle import Source


class ParticipantState(StrEnum):
    JOINED = "joined"
    INVITING = "inviting"
    INVITED = "invited"
    ACTIVE = "active"


class MediaSources(BaseModel):
    """What one participant sends in one media (``audio`` / ``video``)."""

    sources: list[Source] = Field(default_factory=list)
    groups: list[SsrcGroup] = Field(default_factory=list)


class Participant(BaseModel):
    endpoint_id: str
    occupant_jid: str
    real_jid: str | None = None
    state: ParticipantState = ParticipantState.JOINED
    sid: str | None = None
    # Colibri ids on the current bridge: content name -> channel id ("data" -> sctpconnection id)
    channels: dict[str, str] = Field(default_factory=dict)
    sources: dict[str, MediaSources] = Field(default_factory=dict)
    invites: int = 0
    # a recorder's media session (services/focus/jibri.py): not a room occupant, receives only,
    # does not keep the conference alive; ``recording`` is its Jibri session id
    hidden: bool = False
    recording: str | None = None
    # kinds ("audio", "video") a moderator muted: the bridge forwards none of them (its channel
    # is recvonly, services/focus/moderation.py), across bridge moves too
    muted: list[str] = Field(default_factory=list)
    # the SIP gateway (its real JID is the gateway's account, services/focus/config.py): its audio
    # channel is a mixer channel and its offer carries the bridge's one mixed stream, no one's
    # sources; it gets no source-add/-remove (others still get its voice)
    mixed_audio: bool = False

    @property
    def has_session(self) -> bool:
        """A session-initiate went out: this participant gets source-add/-remove."""
        return self.state in (ParticipantState.INVITED, ParticipantState.ACTIVE)

    def has_sources(self) -> bool:
        return any(m.sources for m in self.sources.values())

    def reset_session(self) -> None:
        """Back to JOINED: no channels, no session, no sources (they belong to the old session)."""
        self.state = ParticipantState.JOINED
        self.sid = None
        self.channels = {}
        self.sources = {}


class Conference(BaseModel):
    room: str
    bridge_id: str | None = None
    colibri_id: str | None = None
    participants: dict[str, Participant] = Field(default_factory=dict)
    moves: int = 0

    def occupant_joined(
        self, endpoint_id: str, occupant_jid: str, real_jid: str | None = None
    ) -> Participant | None:
        """A new occupant (not the focus): returns the participant if it is new."""
        if endpoint_id in self.participants:
            return None
        participant = Participant(endpoint_id=endpoint_id, occupant_jid=occupant_jid, real_jid=real_jid)
        self.participants[endpoint_id] = participant
        return participant

    def occupant_left(self, endpoint_id: str) -> Participant | None:
        return self.participants.pop(endpoint_id, None)

    def others(self, endpoint_id: str) -> list[Participant]:
        return [p for p in self.participants.values() if p.endpoint_id != endpoint_id]

    def with_session(self, exclude: str | None = None) -> list[Participant]:
        """Participants who hold a Jingle session and hear sources (they get source updates; the
        gateway, hearing the bridge's mix, does not)."""
        return [
            p for p in self.participants.values()
            if p.has_session and p.endpoint_id != exclude and not p.mixed_audio
        ]  # fmt: skip

    def sources_of_others(self, endpoint_id: str) -> dict[str, MediaSources]:
        """Everything the others send, per media: what a session-initiate advertises."""
        out: dict[str, MediaSources] = {}
        for other in self.others(endpoint_id):
            for media, ms in other.sources.items():
                merged = out.setdefault(media, MediaSources())
                merged.sources.extend(ms.sources)
                merged.groups.extend(ms.groups)
        return out

    def by_sid(self, sid: str) -> Participant | None:
        for participant in self.participants.values():
            if participant.sid == sid:
                return participant
        return None

    def lose_bridge(self) -> list[tuple[Participant, str]]:
        """The bridge is gone: forget it; every participant needs a new session. Returns those
        that had one with its old sid (they get session-terminate "moving")."""
        had_session = [(p, p.sid) for p in self.participants.values() if p.sid is not None]
        self.bridge_id = None
        self.colibri_id = None
        for participant in self.participants.values():
            participant.reset_session()
        self.moves += 1
        return had_session

    @property
    def empty(self) -> bool:
        """No one left but recorders."""
        return all(p.hidden for p in self.participants.values())
