"""ColibriService on a real media engine (no socket): the data-channel side of Colibri requests
and of expiry reaches its listeners."""

from __future__ import annotations

from services.bridge.colibri.conferences import ConferenceBook
from services.bridge.colibri.service import ColibriService
from services.bridge.media.engine import MediaConfig, MediaEngine
from services.common.colibri import parse_conference


def test_sctpconnection_listeners_follow_requests_and_expiry() -> None:
    now = [0.0]
    engine = MediaEngine(MediaConfig(port=0))
    service = ColibriService(ConferenceBook(), engine, None, clock=lambda: now[0])
    told: list[tuple[str, str, int | None]] = []
    expired: list[tuple[str, str]] = []
    service.sctp_listeners.append(lambda c, e, port: told.append((c, e, port)))
    service.endpoint_expired_listeners.append(lambda c, e: expired.append((c, e)))
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
    service = ColibriService(ConferenceBook(), engine, None, clock=lambda: 0.0)
    expired: list[str] = []
    service.conference_expired_listeners.append(expired.append)
    cid = service.create_conference(
        parse_conference(b'{"contents": [{"name": "audio", "channels": [{"endpoint": "e", "expire": 100}]}]}')
    )["id"]
    assert engine.has_endpoint(cid, "e")
    service.expire_conference(cid)
    assert expired == [cid] and not engine.has_endpoint(cid, "e")
    assert service.list_conferences() == []
    with pytest.raises(UnknownConference):
        service.expire_conference(cid)
