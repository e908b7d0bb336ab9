"""ColibriService on a real media engine (no socket): the data-channel side of Colibri requests
and of expiry reaches its listeners."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.bridge.colibri.conferences import ConferenceBook
from services.bridge.colibri.service import ColibriService, NoEvents
from services.bridge.media.engine import MediaConfig, MediaEngine
from services.common.colibri import parse_conference


@dataclass
class Recorder(NoEvents):
    sctp: list[tuple[str, str, int | None]] = field(default_factory=list)
    expired: list[tuple[str, str]] = field(default_factory=list)
    conferences_expired: list[str] = field(default_factory=list)

    def sctp_changed(self, conference_id: str, endpoint_id: str, port: int | None) -> None:
        self.sctp.append((conference_id, endpoint_id, port))

    def endpoint_expired(self, conference_id: str, endpoint_id: str) -> None:
        self.expired.append((conference_id, endpoint_id))

    def conference_expired(self, conference_id: str) -> None:
        self.conferences_expired.append(conference_id)


def test_sctpconnection_events_follow_requests_and_expiry() -> None:
    now = [0.0]
    engine = MediaEngine(MediaConfig(port=0))
    events = Recorder()
    service = ColibriService(ConferenceBook(), engine, None, clock=lambda: now[0], events=events)
    told, expired = events.sctp, events.expired
    out = service.create_conference(
        parse_conference(
            b'{"contents": [{"name": "audio", "channels": [{"endpoint": "e", "expire": 100}]},'
            b'{"name": "data", "sctpconnections": [{"endpoint": "e", "expire": 5, "port": 5000}]}]}'
        )
    )
    cid = out["id"]
    assert told == [(cid, "e", 5000)]
    now[0] = 10.0  # the sctpconnection's expire passed, the audio channel's did not
    service.sweep()
    assert told[-1] == (cid, "e", None) and expired == []
    assert engine.has_endpoint(cid, "e")
    now[0] = 200.0
    service.sweep()
    assert expired == [(cid, "e")] and len(told) == 2


def test_a_conference_is_expired_on_request_with_its_endpoints() -> None:
    import pytest

    from services.bridge.colibri.conferences import UnknownConference

    engine = MediaEngine(MediaConfig(port=0))
    events = Recorder()
    service = ColibriService(ConferenceBook(), engine, None, clock=lambda: 0.0, events=events)
    expired = events.conferences_expired
    cid = service.create_conference(
        parse_conference(b'{"contents": [{"name": "audio", "channels": [{"endpoint": "e", "expire": 100}]}]}')
    )["id"]
    assert engine.has_endpoint(cid, "e")
    service.expire_conference(cid)
    assert expired == [cid] and not engine.has_endpoint(cid, "e")
    assert service.list_conferences() == []
    with pytest.raises(UnknownConference):
        service.expire_conference(cid)
