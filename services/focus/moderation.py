"""Who moderates a room and who may mute whom: the focus's decisions, without I/O.

The focus owns every conference room, so it grants moderator rights as Jicofo does (an
``owner`` affiliation, which the MUC turns into the ``moderator`` role):

* a token's ``moderator`` claim decides when present (the broker stamps it into the occupant's
  ``<identity>``; services/xmpp/modules/presence_identity.py);
* with authentication on, every authenticated participant (a token holder or an account on the
  login host) is a moderator, guests are not;
* with authentication off, the first participant is;
* when the last moderator leaves, the longest-present participant who may moderate is granted.

Mutes follow Jicofo's ``MuteIqHandler`` and Jitsi's AV moderation
(``mod_av_moderation_component``): a moderator may mute anyone; only the participant itself may
unmute (a moderator cannot turn someone's microphone on); while AV moderation is on for a kind,
a participant who is not a moderator unmutes only after a moderator approved it. A moderator's
mute is enforced by the bridge (the participant's channel becomes receive-only) until the focus
lifts it on the participant's own unmute request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("audio", "video")


class Refused(Exception):
    """A moderation request is refused; ``condition`` is the XMPP stanza error."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


@dataclass
class Member:
    nick: str
    real_jid: str
    role: str = "participant"
    authenticated: bool = False
    moderator_claim: bool | None = None
    order: int = 0
    # AV moderation's mutes were applied at its join (later presences must not mute it again)
    join_muted: bool = False


@dataclass
class RoomModeration:
    members: dict[str, Member] = field(default_factory=dict)
    # kinds force-muted per nick (the bridge drops them)
    muted: dict[str, set[str]] = field(default_factory=dict)
    # AV moderation: kinds under moderation, and who was approved to unmute each kind
    av_moderation: set[str] = field(default_factory=set)
    approved: dict[str, set[str]] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)  # nicks the focus already asked to be owners
    joins: int = 0

    def moderators(self) -> list[Member]:
        return [m for m in self.members.values() if m.role == "moderator"]

    def by_real_jid(self, real_jid: str) -> Member | None:
        for member in self.members.values():
            if member.real_jid == real_jid:
                return member
        return None


@dataclass(frozen=True)
class MuteAction:
    """What the focus does for an accepted request: tell the bridge (the participant's kinds are
    now ``muted``), and tell the participant when someone else muted it."""

    room: str
    nick: str
    kind: str
    mute: bool
    actor: str | None  # the moderator's nick when it is not the participant itself
    bridge_changed: bool


class Moderation:
    def __init__(self, auth_enabled: bool = False) -> None:
        self.auth_enabled = auth_enabled
        self.rooms: dict[str, RoomModeration] = {}

    def room(self, room: str) -> RoomModeration:
        state = self.rooms.get(room)
        if state is None:
            state = self.rooms[room] = RoomModeration()
        return state

    def is_moderator(self, room: str, nick: str) -> bool:
        """Whether the room's occupant ``nick`` has the moderator role (as its last presence said)."""
        state = self.rooms.get(room)
        member = state.members.get(nick) if state is not None else None
        return member is not None and member.role == "moderator"

    # -- moderator rights ----------------------------------------------------------------------
    def may_moderate(self, member: Member) -> bool:
        if member.moderator_claim is not None:
            return member.moderator_claim
        return member.authenticated or not self.auth_enabled

    def presence(
        self,
        room: str,
        nick: str,
        real_jid: str,
        role: str,
        authenticated: bool,
        moderator_claim: bool | None,
    ) -> list[str]:
        """An occupant's presence (join or update); returns the nicks to make owners."""
        state = self.room(room)
        member = state.members.get(nick)
        if member is None or member.real_jid != real_jid:
            state.joins += 1
            member = Member(nick, real_jid, role, authenticated, moderator_claim, state.joins)
            state.members[nick] = member
            state.granted.discard(nick)
            if self._wants_moderator(state, member):
                state.granted.add(nick)
                return [nick]
            return []
        member.role = role
        return []

    def _wants_moderator(self, state: RoomModeration, member: Member) -> bool:
        if member.role == "moderator":
            return False
        if member.moderator_claim is not None or self.auth_enabled:
            return self.may_moderate(member)
        others = [m for m in state.members.values() if m is not member]
        return not any(m.role == "moderator" or m.nick in state.granted for m in others)

    def left(self, room: str, nick: str) -> list[str]:
        """An occupant left; returns whom to make owner when no moderator is left."""
        state = self.rooms.get(room)
        if state is None:
            return []
        state.members.pop(nick, None)
        state.muted.pop(nick, None)
        state.granted.discard(nick)
        for approved in state.approved.values():
            approved.discard(nick)
        if not state.members:
            del self.rooms[room]
            return []
        if any(m.role == "moderator" or m.nick in state.granted for m in state.members.values()):
            return []
        candidates = sorted(
            (m for m in state.members.values() if self.may_moderate(m)), key=lambda m: m.order
        )
        if not candidates:
            return []
        state.granted.add(candidates[0].nick)
        return [candidates[0].nick]

    def forget(self, room: str) -> None:
        self.rooms.pop(room, None)

    # -- mutes ---------------------------------------------------------------------------------
    def mute_request(self, room: str, actor_jid: str, target_nick: str, kind: str, mute: bool) -> MuteAction:
        """Jitsi's mute IQ (``urn:xmpp:jitsi-mute``-style ``<mute jid=…>true</mute>``) from ``actor_jid``."""
        if kind not in KINDS:
            raise Refused("bad-request", f"unknown media kind {kind!r}")
        state = self.rooms.get(room)
        actor = state.by_real_jid(actor_jid) if state is not None else None
        if state is None or actor is None:
            raise Refused("forbidden", "only participants of the room may ask")
        target = state.members.get(target_nick)
        if target is None:
            raise Refused("item-not-found", f"no participant {target_nick!r} in the room")
        itself = target is actor
        if not itself and actor.role != "moderator":
            raise Refused("forbidden", "only moderators may mute others")
        if not mute and not itself:
            raise Refused("not-allowed", "only the participant itself may unmute")
        if not mute and kind in state.av_moderation and actor.role != "moderator":
            if target_nick not in state.approved.get(kind, set()):
                raise Refused("forbidden", f"{kind} moderation is on: wait for a moderator's approval")
        muted = state.muted.setdefault(target_nick, set())
        before = kind in muted
        if mute:
            muted.add(kind)
        else:
            muted.discard(kind)
        return MuteAction(room, target_nick, kind, mute, None if itself else actor.nick, before != mute)

    def mute_all(self, room: str, actor_jid: str, kind: str) -> list[MuteAction]:
        """A moderator mutes everyone else (Jitsi's "mute everyone")."""
        state = self.rooms.get(room)
        actor = state.by_real_jid(actor_jid) if state is not None else None
        if state is None or actor is None or actor.role != "moderator":
            raise Refused("forbidden", "only moderators may mute everyone")
        return [
            self.mute_request(room, actor_jid, nick, kind, True)
            for nick in list(state.members)
            if nick != actor.nick
        ]

    def set_av_moderation(self, room: str, actor_jid: str, kind: str, enabled: bool) -> list[MuteAction]:
        """AV moderation on (everyone but moderators muted, nobody unmutes unapproved) or off."""
        if kind not in KINDS:
            raise Refused("bad-request", f"unknown media kind {kind!r}")
        state = self.rooms.get(room)
        actor = state.by_real_jid(actor_jid) if state is not None else None
        if state is None or actor is None or actor.role != "moderator":
            raise Refused("forbidden", "only moderators may change AV moderation")
        if not enabled:
            state.av_moderation.discard(kind)
            state.approved.pop(kind, None)
            return []
        state.av_moderation.add(kind)
        state.approved[kind] = set()
        for member in state.members.values():
            member.join_muted = True  # muted here, not again by their next presence
        return [
            self.mute_request(room, actor_jid, m.nick, kind, True)
            for m in list(state.members.values())
            if m.role != "moderator"
        ]

    def approve(self, room: str, actor_jid: str, kind: str, nick: str) -> None:
        state = self.rooms.get(room)
        actor = state.by_real_jid(actor_jid) if state is not None else None
        if state is None or actor is None or actor.role != "moderator":
            raise Refused("forbidden", "only moderators may approve")
        if kind not in state.av_moderation:
            raise Refused("not-allowed", f"{kind} moderation is off")
        if nick not in state.members:
            raise Refused("item-not-found", f"no participant {nick!r} in the room")
        state.approved.setdefault(kind, set()).add(nick)

    def reject(self, room: str, actor_jid: str, kind: str, nick: str) -> MuteAction | None:
        """A moderator turns down ``nick``'s request to unmute ``kind`` (or withdraws an approval,
        Jitsi's ``jidToBlacklist``): the approval goes and, when it had unmuted, it is muted again."""
        state = self.rooms.get(room)
        actor = state.by_real_jid(actor_jid) if state is not None else None
        if state is None or actor is None or actor.role != "moderator":
            raise Refused("forbidden", "only moderators may reject")
        if kind not in state.av_moderation:
            raise Refused("not-allowed", f"{kind} moderation is off")
        target = state.members.get(nick)
        if target is None:
            raise Refused("item-not-found", f"no participant {nick!r} in the room")
        state.approved.get(kind, set()).discard(nick)
        if target.role == "moderator" or kind in state.muted.get(nick, set()):
            return None
        return self.mute_request(room, actor_jid, nick, kind, True)

    def av_moderation_of(self, room: str) -> dict[str, bool]:
        state = self.rooms.get(room)
        on = state.av_moderation if state is not None else set()
        return {kind: kind in on for kind in KINDS}

    def join_mutes(self, room: str, nick: str) -> list[MuteAction]:
        """A newcomer who is not to moderate joins muted in every kind under AV moderation (once:
        the presences that follow, e.g. after an approved unmute, change nothing)."""
        state = self.rooms.get(room)
        member = state.members.get(nick) if state is not None else None
        if state is None or member is None or member.join_muted:
            return []
        member.join_muted = True
        if member.role == "moderator" or nick in state.granted:
            return []
        out = []
        for kind in sorted(state.av_moderation):
            muted = state.muted.setdefault(nick, set())
            if kind not in muted:
                muted.add(kind)
                out.append(MuteAction(room, nick, kind, True, "av-moderation", True))
        return out

    def muted_kinds(self, room: str, nick: str) -> list[str]:
        state = self.rooms.get(room)
        return sorted(state.muted.get(nick, set())) if state is not None else []
