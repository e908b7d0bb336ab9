"""Token checks (services/xmpp/tokens.py): Jitsi's claims, HS256 and RS256."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.xmpp.tokens import (
    KeyCache,
    KeyPending,
    TokenError,
    TokenSettings,
    TokenVerifier,
    keyserver_url,
    mint,
)

SECRET = "s3cret-for-tests"
APP = "parley-app"


def verifier(**kw: object) -> TokenVerifier:
    settings = TokenSettings(app_id=APP, app_secret=SECRET, **kw)  # type: ignore[arg-type]
    return TokenVerifier(settings)


def reason(v: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as err:
        v.verify(token)
    return err.value.reason


def test_valid_hs256_token_gives_jitsi_claims() -> None:
    token = mint(SECRET, APP, "daily", name="Ada", email="ada@example.org", user_id="u1", moderator=True)
    claims = verifier().verify(token)
    assert claims.room == "daily" and claims.issuer == APP
    assert claims.user.name == "Ada" and claims.user.email == "ada@example.org" and claims.user.id == "u1"
    assert claims.moderator is True
    assert claims.allows_room("daily") and claims.allows_room("DAILY") and not claims.allows_room("other")


def test_wildcard_room_and_no_moderator_claim() -> None:
    claims = verifier().verify(mint(SECRET, APP, "*"))
    assert claims.allows_room("anything") and claims.moderator is None


def test_moderator_string_false_is_false() -> None:
    token = mint(SECRET, APP, "r", extra={"moderator": "false"})
    assert verifier().verify(token).moderator is False


def test_expired() -> None:
    token = mint(SECRET, APP, "r", now=time.time() - 7200, ttl=600)
    assert reason(verifier(), token) == "token expired"


def test_not_yet_valid() -> None:
    token = mint(SECRET, APP, "r", not_before=time.time() + 3600, ttl=7200)
    assert reason(verifier(), token) == "token not yet valid (nbf)"


def test_wrong_signature() -> None:
    token = mint("another-secret", APP, "r")
    assert reason(verifier(), token) == "invalid token signature"


def test_wrong_audience() -> None:
    token = mint(SECRET, APP, "r", audience="someone-else")
    assert reason(verifier(accepted_audiences=("jitsi",)), token) == "invalid audience ('aud' claim)"
    assert verifier().verify(token).room == "r"  # '*' (the default) accepts any audience


def test_wrong_issuer() -> None:
    token = mint(SECRET, "another-app", "r")
    assert reason(verifier(), token) == "invalid issuer ('iss' claim)"
    assert verifier(accepted_issuers=("another-app",)).verify(token).issuer == "another-app"


def test_missing_room_and_exp() -> None:
    import jwt

    no_room = jwt.encode({"iss": APP, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert reason(verifier(), no_room) == "'room' claim is missing"
    no_exp = jwt.encode({"iss": APP, "room": "r"}, SECRET, algorithm="HS256")
    assert reason(verifier(), no_exp) == "'exp' claim is missing"


def test_alg_none_and_garbage_refused() -> None:
    import jwt

    unsigned = jwt.encode({"iss": APP, "room": "r", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert "not accepted" in reason(verifier(), unsigned)
    assert reason(verifier(), "not-a-token") == "malformed token"
    assert reason(verifier(), "") == "a token is required"
    assert reason(verifier(), "a" * 10000) == "token too long"


def _rsa() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


def test_rs256_with_a_local_key() -> None:
    private, public = _rsa()
    other_private, _ = _rsa()
    v = TokenVerifier(TokenSettings(app_id=APP, public_keys={"": public}))
    assert v.verify(mint(private, APP, "r", algorithm="RS256", kid="k1")).room == "r"
    assert reason(v, mint(other_private, APP, "r", algorithm="RS256", kid="k1")) == "invalid token signature"
    # an HS256 token signed with the public key as secret (the classic confusion) is refused
    assert reason(v, mint(SECRET, APP, "r")) == "HS256 tokens are not accepted here"


def test_rs256_from_the_key_server_goes_through_the_cache() -> None:
    private, public = _rsa()
    wanted: list[str] = []
    cache = KeyCache()
    v = TokenVerifier(TokenSettings(app_id=APP, keyserver="https://keys.example/asap/"), cache, wanted.append)
    token = mint(private, APP, "r", algorithm="RS256", kid="jitsi/key1")
    assert v.header_kid(token) == "jitsi/key1"
    with pytest.raises(KeyPending):
        v.verify(token)
    assert wanted == ["jitsi/key1"]
    cache.put("jitsi/key1", public)
    assert v.verify(token).room == "r"
    assert keyserver_url("https://keys.example/asap/", "jitsi/key1").startswith("https://keys.example/asap/")
    assert keyserver_url("https://k", "x").endswith(".pem")
    bad = mint(private, APP, "r", algorithm="RS256", kid="../../etc?x=")
    assert v.header_kid(bad) is None
    assert "kid" in reason(v, bad)


def test_key_cache_bounded_and_remembers_failures() -> None:
    cache = KeyCache(size=2, retry_after=10)
    for kid in "abc":
        cache.put(kid, "pem")
    assert cache.get("a") is None and cache.get("c") == "pem"
    cache.fail("x", 100.0)
    assert cache.recently_failed("x", 105.0) and not cache.recently_failed("x", 111.0)
