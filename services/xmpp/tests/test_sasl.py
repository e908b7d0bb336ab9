"""SASL mechanisms against stored SCRAM keys, driven by scramp's client side."""

import pytest
from scramp import ScramClient

from services.xmpp.sasl import (
    Anonymous,
    Plain,
    SaslFailure,
    ScramCredential,
    ScramSha1,
    decode_payload,
    encode_payload,
)

ACCOUNTS = {"focus": ScramCredential.from_password("s3cret", iterations=4096)}


def test_scram_sha1_full_exchange():
    client = ScramClient(["SCRAM-SHA-1"], "focus", "s3cret")
    mech = ScramSha1(ACCOUNTS)
    step = mech.start(client.get_client_first().encode())
    client.set_server_first(step.challenge.decode())
    step = mech.respond(client.get_client_final().encode())
    assert step.success and step.username == "focus"
    client.set_server_final(step.additional.decode())  # verifies the server signature


def test_scram_wrong_password_and_unknown_user_are_not_authorized():
    for user, password in (("focus", "nope"), ("nobody", "s3cret")):
        client = ScramClient(["SCRAM-SHA-1"], user, password)
        mech = ScramSha1(ACCOUNTS)
        with pytest.raises(SaslFailure) as err:
            step = mech.start(client.get_client_first().encode())
            client.set_server_first(step.challenge.decode())
            mech.respond(client.get_client_final().encode())
        assert err.value.condition == "not-authorized"


def test_plain_checks_against_the_stored_keys():
    assert Plain(ACCOUNTS).start(b"\x00focus\x00s3cret").username == "focus"
    with pytest.raises(SaslFailure) as err:
        Plain(ACCOUNTS).start(b"\x00focus\x00wrong")
    assert err.value.condition == "not-authorized"
    with pytest.raises(SaslFailure) as err:
        Plain(ACCOUNTS).start(b"garbage")
    assert err.value.condition == "malformed-request"


def test_anonymous_gives_fresh_identities():
    a, b = Anonymous().start(None), Anonymous().start(None)
    assert a.success and b.success and a.username != b.username


def test_payload_encoding():
    assert decode_payload("=") == b""
    assert decode_payload("") is None
    assert decode_payload(encode_payload(b"abc")) == b"abc"
    with pytest.raises(SaslFailure):
        decode_payload("not base64!")


def test_credentials_can_be_given_prehashed():
    import base64

    cred = ScramCredential.from_password("pw", iterations=4096)
    again = ScramCredential.from_config(
        *(base64.b64encode(v).decode() for v in (cred.salt, cred.stored_key, cred.server_key)),
        cred.iterations,
    )
    assert again.check_password("pw") and not again.check_password("px")
