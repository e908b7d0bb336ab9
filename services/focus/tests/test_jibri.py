"""The focus's recording decisions: which recorder, who may ask, what the room's presence says."""

from __future__ import annotations

from services.common.jibri import RecorderStatus, RecordingMode, Status
from services.focus.conference import Conference
from services.focus.jibri import Recording, RecordingDecisions

ROOM = "r@muc.meet.jitsi"


def test_pick_prefers_the_most_free_capacity_and_counts_pending_starts() -> None:
    d = RecordingDecisions()
    d.recorder_presence("rec1", RecorderStatus(capacity=2, active=1))
    d.recorder_presence("rec2", RecorderStatus(capacity=4, active=1))
    d.recorder_presence("rec3", RecorderStatus(busy=True, capacity=9))
    d.recorder_presence("rec4", RecorderStatus(healthy=False, capacity=9))
    assert d.pick(set()) == "rec2"
    for n in range(3):  # three starts in flight on rec2 use up its capacity
        d.recordings[f"s{n}"] = Recording(f"s{n}", ROOM, "rec2", RecordingMode.FILE, "x")
    assert d.pick(set()) == "rec1"
    assert d.pick({"rec1"}) is None


def test_pick_with_no_recorder_or_only_idle_jibris() -> None:
    d = RecordingDecisions()
    assert d.pick(set()) is None
    d.recorder_presence("b", RecorderStatus())
    d.recorder_presence("a", RecorderStatus())
    assert d.pick(set()) == "a"  # stable order on ties


def test_only_moderators_among_the_participants_may_control_recording() -> None:
    conf = Conference(room=ROOM)
    conf.occupant_joined("alice", f"{ROOM}/alice")
    conf.occupant_joined("bob", f"{ROOM}/bob")
    hidden = conf.occupant_joined("jibri-1", "brewery/rec1")
    assert hidden is not None
    hidden.hidden = True
    assert RecordingDecisions.may_control(conf, "alice", moderator=True)
    assert not RecordingDecisions.may_control(conf, "bob", moderator=False)  # a participant only
    assert not RecordingDecisions.may_control(conf, "mallory", moderator=True)
    assert not RecordingDecisions.may_control(conf, "jibri-1", moderator=True)
    assert not RecordingDecisions.may_control(None, "alice", moderator=True)


def test_a_conference_of_recorders_only_is_empty() -> None:
    conf = Conference(room=ROOM)
    conf.occupant_joined("alice", f"{ROOM}/alice")
    rec = conf.occupant_joined("jibri-1", "brewery/rec1")
    assert rec is not None
    rec.hidden = True
    assert not conf.empty
    conf.occupant_left("alice")
    assert conf.empty


def test_room_status_shows_the_file_recording_first() -> None:
    d = RecordingDecisions()
    assert d.room_status(ROOM) is None
    d.recordings["b"] = Recording("b", ROOM, "rec", RecordingMode.STREAM, f"{ROOM}/alice", status=Status.ON)
    d.recordings["a"] = Recording("a", ROOM, "rec", RecordingMode.FILE, f"{ROOM}/bob")
    status = d.room_status(ROOM)
    assert status is not None and status.session_id == "a" and status.status is Status.PENDING
    assert status.initiator == f"{ROOM}/bob"
    assert [r.session_id for r in d.in_room(ROOM, RecordingMode.STREAM)] == ["b"]
    assert [r.session_id for r in d.recorder_left("rec")] == ["b", "a"]
