import base64
import hashlib
import hmac

import pytest

from services.common.turn import turn_credential, turn_password


def test_username_is_expiry_then_ident_and_password_is_hmac_sha1() -> None:
    cred = turn_credential("north", "alice@meet.jitsi/r1", lifetime=86400, now=1_700_000_000.7)
    assert cred.username == "1700086400:alice@meet.jitsi/r1"
    assert cred.expires == 1_700_086_400
    expected = base64.b64encode(hmac.new(b"north", cred.username.encode(), hashlib.sha1).digest()).decode()
    assert cred.password == expected == turn_password("north", cred.username)


def test_the_ident_cannot_forge_another_expiry() -> None:
    assert turn_credential("k", "a:9999999999", 60, 0).username == "60:a_9999999999"


def test_empty_secret_refused() -> None:
    with pytest.raises(ValueError):
        turn_credential("", "a", 60, 0)


def test_stun_server_specs() -> None:
    from services.common.stun import parse_server

    assert parse_server("stun.example.org") == ("stun.example.org", 3478)
    assert parse_server("stun:192.0.2.1:3479") == ("192.0.2.1", 3479)
    assert parse_server("[2001:db8::1]:5000") == ("2001:db8::1", 5000)
    assert parse_server("2001:db8::1") == ("2001:db8::1", 3478)
    for bad in ("", ":3478", "host:0", "host:99999"):
        with pytest.raises(ValueError):
            parse_server(bad)
