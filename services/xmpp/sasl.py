"""SASL mechanisms (RFC 6120 section 6) as sans-I/O exchanges.

Service accounts are kept as SCRAM-SHA-1 salted keys (RFC 5802): the broker never holds their
passwords. SCRAM-SHA-1 is run by ``scramp``; PLAIN is checked against the same stored keys by
deriving the client's stored key from the offered password. ANONYMOUS issues a fresh identity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scramp import ScramException, ScramMechanism

from .tokens import KeyPending, TokenClaims, TokenError, TokenVerifier

SCRAM_ITERATIONS = 4096
_SCRAM = ScramMechanism("SCRAM-SHA-1")


@dataclass(frozen=True)
class ScramCredential:
    """What is stored per account: RFC 5802 ``salt``, ``StoredKey``, ``ServerKey``, iterations."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    @classmethod
    def from_password(cls, password: str, iterations: int = SCRAM_ITERATIONS) -> ScramCredential:
        salt, stored, server, it = _SCRAM.make_auth_info(password, iteration_count=iterations)
        return cls(salt, stored, server, it)

    @classmethod
    def from_config(
        cls, salt_b64: str, stored_key_b64: str, server_key_b64: str, iterations: int
    ) -> ScramCredential:
        return cls(
            base64.b64decode(salt_b64),
            base64.b64decode(stored_key_b64),
            base64.b64decode(server_key_b64),
            iterations,
        )

    def check_password(self, password: str) -> bool:
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), self.salt, self.iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
        return hmac.compare_digest(hashlib.sha1(client_key).digest(), self.stored_key)


class SaslFailure(Exception):
    """The exchange failed; ``condition`` is the RFC 6120 SASL failure element name."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(condition)
        self.condition = condition
        self.text = text


@dataclass
class SaslStep:
    """Result of one step: a challenge to send, or success (with the authenticated username)."""

    challenge: bytes | None = None
    success: bool = False
    username: str | None = None
    additional: bytes | None = None


TOO_MANY = "too many failed attempts; try again later"


class Mechanism:
    name = ""
    user: str | None = None  # the account tried, once known (for failed-login limits)

    def start(self, initial: bytes | None) -> SaslStep:  # pragma: no cover - interface
        raise NotImplementedError

    def respond(self, response: bytes) -> SaslStep:
        raise SaslFailure("malformed-request", "unexpected response")


class Anonymous(Mechanism):
    name = "ANONYMOUS"

    def start(self, initial: bytes | None) -> SaslStep:
        return SaslStep(success=True, username=str(uuid.uuid4()))


class TokenAnonymous(Mechanism):
    """ANONYMOUS that succeeds only with a valid JWT from the connection's URL (Jitsi's
    mod_auth_token: lib-jitsi-meet logs in anonymously and puts ``?token=`` on the URL)."""

    name = "ANONYMOUS"

    def __init__(self, verifier: TokenVerifier, token: str, allow_empty: bool = False) -> None:
        self.verifier = verifier
        self.token = token
        self.allow_empty = allow_empty
        self.claims: TokenClaims | None = None

    def start(self, initial: bytes | None) -> SaslStep:
        if not self.token and self.allow_empty:
            return SaslStep(success=True, username=str(uuid.uuid4()))
        try:
            self.claims = self.verifier.verify(self.token)
        except KeyPending as pending:
            raise SaslFailure("temporary-auth-failure", pending.reason) from None
        except TokenError as err:
            raise SaslFailure("not-authorized", err.reason) from None
        return SaslStep(success=True, username=str(uuid.uuid4()))


class Plain(Mechanism):
    name = "PLAIN"

    def __init__(
        self, accounts: Mapping[str, ScramCredential], gate: Callable[[str], bool] | None = None
    ) -> None:
        self.accounts = accounts
        self.gate = gate

    def start(self, initial: bytes | None) -> SaslStep:
        if initial is None:
            return SaslStep(challenge=b"")
        return self.respond(initial)

    def respond(self, response: bytes) -> SaslStep:
        parts = response.split(b"\x00")
        if len(parts) != 3:
            raise SaslFailure("malformed-request", "PLAIN wants authzid NUL authcid NUL password")
        try:
            authzid, user, password = (p.decode() for p in parts)
        except UnicodeDecodeError:
            raise SaslFailure("malformed-request", "not UTF-8") from None
        user = self.user = user.lower()
        if self.gate is not None and not self.gate(user):
            raise SaslFailure("temporary-auth-failure", TOO_MANY)
        cred = self.accounts.get(user)
        if cred is None or not cred.check_password(password):
            raise SaslFailure("not-authorized")
        if authzid and authzid.split("@")[0].lower() != user:
            raise SaslFailure("invalid-authzid")
        return SaslStep(success=True, username=user)


class _Refused(ScramException):
    """The account is locked out for now (raised inside scramp's lookup)."""

    def __init__(self) -> None:
        super().__init__(TOO_MANY)


class ScramSha1(Mechanism):
    name = "SCRAM-SHA-1"

    def __init__(
        self, accounts: Mapping[str, ScramCredential], gate: Callable[[str], bool] | None = None
    ) -> None:
        self.accounts = accounts
        self.gate = gate
        self._user: str | None = None
        self._server = _SCRAM.make_server(self._lookup)
        self._stage = 0

    def _lookup(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        self.user = username.lower()
        if self.gate is not None and not self.gate(self.user):
            raise _Refused()
        cred = self.accounts.get(username.lower())
        if cred is None:
            raise ScramException("unknown user")
        self._user = username.lower()
        return cred.salt, cred.stored_key, cred.server_key, cred.iterations

    def start(self, initial: bytes | None) -> SaslStep:
        if not initial:
            return SaslStep(challenge=b"")
        return self.respond(initial)

    def respond(self, response: bytes) -> SaslStep:
        try:
            text = response.decode()
        except UnicodeDecodeError:
            raise SaslFailure("malformed-request", "not UTF-8") from None
        try:
            if self._stage == 0:
                self._server.set_client_first(text)
                self._stage = 1
                return SaslStep(challenge=self._server.get_server_first().encode())
            if self._stage == 1:
                self._server.set_client_final(text)
                self._stage = 2
                return SaslStep(
                    success=True, username=self._user, additional=self._server.get_server_final().encode()
                )
        except _Refused:
            raise SaslFailure("temporary-auth-failure", TOO_MANY) from None
        except ScramException as exc:
            if self._user is None or "proof" in str(exc).lower() or "unknown" in str(exc).lower():
                raise SaslFailure("not-authorized") from None
            raise SaslFailure("malformed-request", str(exc)) from None
        raise SaslFailure("malformed-request", "exchange already complete")


def decode_payload(text: str) -> bytes | None:
    """SASL element text: base64, ``=`` for an empty response; None when absent."""
    text = text.strip()
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise SaslFailure("incorrect-encoding") from None


def encode_payload(data: bytes | None) -> str:
    if data is None:
        return ""
    return base64.b64encode(data).decode() if data else "="
