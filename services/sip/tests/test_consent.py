"""Consent by arrival for plain-RTP callers (services/sip/consent.py)."""

from __future__ import annotations

from services.sip.consent import MediaConsent


def test_media_only_to_an_address_that_sends_rtp() -> None:
    c = MediaConsent(unverified=1.0, timeout=30.0, now=100.0)
    assert c.may_send(100.0) and c.may_send(100.9)
    assert not c.may_send(101.0)  # nothing arrived within the first second: held
    assert not c.may_send(500.0)
    c.heard(500.0)  # the caller's first packet
    assert c.may_send(500.0) and c.may_send(529.9)
    assert not c.may_send(530.0)  # its last packet is 30 s old: held again
    c.heard(600.0)
    assert c.may_send(600.1)


def test_no_unverified_sending_at_all() -> None:
    c = MediaConsent(unverified=0.0, timeout=5.0, now=0.0)
    assert not c.may_send(0.0)
    c.heard(1.0)
    assert c.may_send(1.0)
