"""Moderator rights and mutes as the focus decides them (services/focus/moderation.py)."""

from __future__ import annotations

import pytest

from services.focus.moderation import Moderation, Refused

R = "room@muc.meet.jitsi"


def join(m: Moderation, nick: str, *, auth: bool = False, claim: bool | None = None) -> list[str]:
    return m.presence(R, nick, f"{nick}@meet.jitsi/x", "participant", auth, claim)


def promote(m: Moderation, nick: str) -> None:
    m.presence(R, nick, f"{nick}@meet.jitsi/x", "moderator", False, None)


def test_first_participant_moderates_without_auth_and_hands_over() -> None:
    m = Moderation(auth_enabled=False)
    assert join(m, "a") == ["a"]
    assert join(m, "b") == []  # a was granted, even before its new role shows
    promote(m, "a")
    assert join(m, "c") == []
    assert m.left(R, "a") == ["b"]  # the longest present remaining participant
    promote(m, "b")
    assert m.left(R, "c") == []


def test_with_auth_authenticated_and_token_claims_decide() -> None:
    m = Moderation(auth_enabled=True)
    assert join(m, "guest") == []
    assert join(m, "host", auth=True) == ["host"]
    assert join(m, "tokenless-mod", claim=True) == ["tokenless-mod"]
    assert join(m, "no", auth=True, claim=False) == []
    promote(m, "host")
    promote(m, "tokenless-mod")
    m.left(R, "host")
    # a moderator is still there: nobody new
    assert m.left(R, "tokenless-mod") == []  # only a guest and a claim=false user remain


def test_mutes_follow_jicofo() -> None:
    m = Moderation()
    join(m, "mod")
    promote(m, "mod")
    join(m, "p")
    join(m, "q")
    action = m.mute_request(R, "mod@meet.jitsi/x", "p", "audio", True)
    assert action.actor == "mod" and action.bridge_changed and m.muted_kinds(R, "p") == ["audio"]
    with pytest.raises(Refused) as err:
        m.mute_request(R, "q@meet.jitsi/x", "p", "audio", True)
    assert err.value.condition == "forbidden"
    with pytest.raises(Refused) as err:
        m.mute_request(R, "mod@meet.jitsi/x", "p", "audio", False)
    assert err.value.condition == "not-allowed"
    with pytest.raises(Refused) as err:
        m.mute_request(R, "stranger@meet.jitsi/x", "p", "audio", True)
    assert err.value.condition == "forbidden"
    with pytest.raises(Refused):
        m.mute_request(R, "mod@meet.jitsi/x", "p", "smell", True)
    unmute = m.mute_request(R, "p@meet.jitsi/x", "p", "audio", False)  # itself
    assert unmute.actor is None and unmute.bridge_changed and m.muted_kinds(R, "p") == []
    everyone = m.mute_all(R, "mod@meet.jitsi/x", "video")
    assert sorted(a.nick for a in everyone) == ["p", "q"]


def test_av_moderation_needs_approval_to_unmute() -> None:
    m = Moderation()
    join(m, "mod")
    promote(m, "mod")
    join(m, "p")
    with pytest.raises(Refused):
        m.set_av_moderation(R, "p@meet.jitsi/x", "audio", True)
    muted = m.set_av_moderation(R, "mod@meet.jitsi/x", "audio", True)
    assert [a.nick for a in muted] == ["p"]
    join(m, "late")
    assert [(a.nick, a.kind) for a in m.join_mutes(R, "late")] == [("late", "audio")]
    with pytest.raises(Refused) as err:
        m.mute_request(R, "p@meet.jitsi/x", "p", "audio", False)
    assert "approval" in err.value.text
    m.approve(R, "mod@meet.jitsi/x", "audio", "p")
    assert not m.mute_request(R, "p@meet.jitsi/x", "p", "audio", False).mute
    # its next presence (now unmuted) does not mute it again; nor does the latecomer's
    assert m.join_mutes(R, "p") == [] and m.join_mutes(R, "late") == []
    assert m.muted_kinds(R, "p") == []
    m.set_av_moderation(R, "mod@meet.jitsi/x", "audio", False)
    assert not m.mute_request(R, "late@meet.jitsi/x", "late", "audio", False).mute


def test_av_moderation_reject_withdraws_the_approval_and_mutes_again() -> None:
    m = Moderation()
    join(m, "mod")
    promote(m, "mod")
    join(m, "p")
    join(m, "q")
    with pytest.raises(Refused) as err:
        m.reject(R, "mod@meet.jitsi/x", "audio", "p")
    assert err.value.condition == "not-allowed"  # moderation is off
    m.set_av_moderation(R, "mod@meet.jitsi/x", "audio", True)
    # a participant can neither approve itself nor turn down someone else
    with pytest.raises(Refused) as err:
        m.approve(R, "p@meet.jitsi/x", "audio", "p")
    assert err.value.condition == "forbidden"
    with pytest.raises(Refused) as err:
        m.reject(R, "p@meet.jitsi/x", "audio", "q")
    assert err.value.condition == "forbidden"
    # a pending request turned down: still muted, nothing for the bridge to do
    assert m.reject(R, "mod@meet.jitsi/x", "audio", "p") is None
    with pytest.raises(Refused):
        m.mute_request(R, "p@meet.jitsi/x", "p", "audio", False)
    # approved, unmuted, then the approval withdrawn: muted again by the moderator
    m.approve(R, "mod@meet.jitsi/x", "audio", "p")
    m.mute_request(R, "p@meet.jitsi/x", "p", "audio", False)
    again = m.reject(R, "mod@meet.jitsi/x", "audio", "p")
    assert again is not None and again.mute and again.actor == "mod" and again.bridge_changed
    assert m.muted_kinds(R, "p") == ["audio"]
    with pytest.raises(Refused):
        m.mute_request(R, "p@meet.jitsi/x", "p", "audio", False)
    with pytest.raises(Refused) as err:
        m.reject(R, "mod@meet.jitsi/x", "audio", "nobody")
    assert err.value.condition == "item-not-found"
    assert m.av_moderation_of(R) == {"audio": True, "video": False}
