"""JWT tokens as Jitsi's ``mod_auth_token`` checks them (jitsi-meet ``doc/tokens.md``), without I/O.

A client carries its token as ``?token=`` on the WebSocket or BOSH URL and logs in with SASL
ANONYMOUS; the broker lets that login succeed only when the token verifies, and checks the ``room``
claim again when the client joins a conference room. Claims (RFC 7519 and Jitsi's):

* ``iss`` one of the accepted issuers (default: the application id, ``JWT_APP_ID``);
* ``aud`` one of the accepted audiences (``*`` accepts any);
* ``exp`` in the future, ``nbf`` in the past (a small leeway for clock skew); ``exp`` is required;
* ``room``: the room's name (the node of ``room@muc.<domain>``), or ``*`` for every room;
* ``sub``: the tenant/domain (not checked, as Jitsi without domain verification);
* ``context.user``: ``name``, ``email``, ``avatar``, ``id``; ``moderator`` (``true``/``"true"``)
  at the top level or in ``context.user``.

HS256 tokens are signed with the application secret; RS256 tokens with a key looked up by the
header's ``kid`` (a local key file, or Jitsi's ASAP key server: ``<server>/<sha256(kid)>.pem``;
the fetch itself is the broker's business, :class:`KeyCache` holds the results).

``python -m services.xmpp.tokens --secret S --app-id A --room R --name N [--moderator]`` mints a
token (docs/authentication.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

# characters a key id may contain before it is used in a key-server URL
_KID = re.compile(r"^[A-Za-z0-9._/\-]{1,128}$")
MAX_TOKEN_LENGTH = 8192
LEEWAY = 30.0


class TokenError(Exception):
    """A token was refused; ``reason`` is what the client is told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyPending(TokenError):
    """The RS256 key for this ``kid`` is being fetched; the client may retry shortly."""


@dataclass(frozen=True)
class UserContext:
    id: str = ""
    name: str = ""
    email: str = ""
    avatar: str = ""


@dataclass(frozen=True)
class TokenClaims:
    """What the broker keeps about a verified token."""

    issuer: str
    room: str
    subject: str
    expires: float
    moderator: bool | None  # None: the token says nothing (the focus decides)
    user: UserContext = field(default_factory=UserContext)

    def allows_room(self, room_node: str) -> bool:
        """The ``room`` claim against a room's name, case-insensitively as Jitsi does."""
        return self.room == "*" or self.room.lower() == room_node.lower()

    def to_json(self) -> str:
        """The one wire form of verified claims between broker nodes (services/xmpp/cluster.py)."""
        return json.dumps(
            {
                "iss": self.issuer,
                "room": self.room,
                "sub": self.subject,
                "exp": self.expires,
                "moderator": self.moderator,
                "user": {"id": self.user.id, "name": self.user.name, "email": self.user.email,
                         "avatar": self.user.avatar},
            },
            separators=(",", ":"),
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> TokenClaims:
        """Claims another node verified; ``ValueError`` when the text is not what :meth:`to_json` makes."""
        try:
            d = json.loads(text)
            user = d.get("user") or {}
            moderator = d.get("moderator")
            if moderator is not None and not isinstance(moderator, bool):
                raise ValueError("moderator")
            return cls(
                issuer=str(d["iss"]),
                room=str(d["room"]),
                subject=str(d["sub"]),
                expires=float(d["exp"]),
                moderator=moderator,
                user=UserContext(*(_text(user.get(k)) for k in ("id", "name", "email", "avatar"))),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad claims: {exc}") from None


def _truthy(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def _text(value: Any, limit: int = 256) -> str:
    return value[:limit] if isinstance(value, str) else ""


@dataclass
class TokenSettings:
    app_id: str
    app_secret: str = ""
    accepted_issuers: tuple[str, ...] = ()
    accepted_audiences: tuple[str, ...] = ("*",)
    # RS256 public keys (PEM) by key id, e.g. from a local key file; "" keys any kid
    public_keys: dict[str, str] = field(default_factory=dict)
    keyserver: str = ""

    @property
    def issuers(self) -> tuple[str, ...]:
        return self.accepted_issuers or (self.app_id,)


class KeyCache:
    """RS256 keys fetched from the key server, by ``kid``; bounded, with remembered failures."""

    def __init__(self, size: int = 128, retry_after: float = 30.0) -> None:
        self.size = size
        self.retry_after = retry_after
        self.keys: OrderedDict[str, str] = OrderedDict()
        self.failed: dict[str, float] = {}

    def get(self, kid: str) -> str | None:
        key = self.keys.get(kid)
        if key is not None:
            self.keys.move_to_end(kid)
        return key

    def put(self, kid: str, pem: str) -> None:
        self.keys[kid] = pem
        self.keys.move_to_end(kid)
        self.failed.pop(kid, None)
        while len(self.keys) > self.size:
            self.keys.popitem(last=False)

    def fail(self, kid: str, now: float) -> None:
        self.failed[kid] = now
        if len(self.failed) > self.size:
            oldest = min(self.failed, key=self.failed.__getitem__)
            del self.failed[oldest]

    def recently_failed(self, kid: str, now: float) -> bool:
        when = self.failed.get(kid)
        return when is not None and now - when < self.retry_after


def keyserver_url(server: str, kid: str) -> str:
    """Jitsi's ASAP layout: the PEM at ``<server>/<hex sha256 of kid>.pem``."""
    return f"{server.rstrip('/')}/{hashlib.sha256(kid.encode()).hexdigest()}.pem"


class TokenVerifier:
    def __init__(
        self,
        settings: TokenSettings,
        cache: KeyCache | None = None,
        want_key: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.cache = cache or KeyCache()
        self.want_key = want_key  # asks the I/O side to fetch a key server's key
        self.clock = clock

    def header_kid(self, token: str) -> str | None:
        """The key id an RS256 token needs from the key server, or None (no fetch needed)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str) or not _KID.match(kid):
            return None
        if not self.settings.keyserver or kid in self.settings.public_keys:
            return None
        return kid

    def _key(self, header: dict[str, Any]) -> tuple[Any, str]:
        alg = header.get("alg")
        s = self.settings
        if alg == "HS256":
            if not s.app_secret:
                raise TokenError("HS256 tokens are not accepted here")
            return s.app_secret, "HS256"
        if alg == "RS256":
            kid = header.get("kid")
            kid = kid if isinstance(kid, str) else ""
            pem = s.public_keys.get(kid) or s.public_keys.get("")
            if pem is None and s.keyserver:
                if not _KID.match(kid):
                    raise TokenError("'kid' header missing or malformed")
                pem = self.cache.get(kid)
                if pem is None:
                    if self.cache.recently_failed(kid, self.clock()):
                        raise TokenError(f"no public key for kid {kid!r}")
                    if self.want_key is not None:
                        self.want_key(kid)
                    raise KeyPending("the signing key is being fetched; try again")
            if pem is None:
                raise TokenError("RS256 tokens are not accepted here")
            return pem, "RS256"
        raise TokenError(f"algorithm {alg!r} not accepted")

    def verify(self, token: str) -> TokenClaims:
        if not token:
            raise TokenError("a token is required")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        key, alg = self._key(header)
        s = self.settings
        audiences = None if "*" in s.accepted_audiences else list(s.accepted_audiences)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audiences,
                leeway=LEEWAY,
                options={
                    "require": ["exp", "iss", "room"],
                    "verify_aud": audiences is not None,
                    "verify_iss": False,
                },
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid (nbf)") from None
        except jwt.InvalidSignatureError:
            raise TokenError("invalid token signature") from None
        except jwt.InvalidAudienceError:
            raise TokenError("invalid audience ('aud' claim)") from None
        except jwt.MissingRequiredClaimError as err:
            raise TokenError(f"'{err.claim}' claim is missing") from None
        except jwt.PyJWTError as err:
            raise TokenError(f"invalid token: {err}"[:200]) from None
        iss = claims.get("iss")
        if "*" not in s.issuers and iss not in s.issuers:
            raise TokenError("invalid issuer ('iss' claim)")
        room = claims.get("room")
        if not isinstance(room, str) or not room:
            raise TokenError("'room' claim is missing")
        context = claims.get("context")
        user = context.get("user") if isinstance(context, dict) else None
        user = user if isinstance(user, dict) else {}
        moderator = _truthy(claims.get("moderator"))
        if moderator is None:
            moderator = _truthy(user.get("moderator"))
        return TokenClaims(
            issuer=str(iss),
            room=room[:256],
            subject=_text(claims.get("sub")),
            expires=float(claims["exp"]),
            moderator=moderator,
            user=UserContext(
                id=_text(user.get("id")),
                name=_text(user.get("name")),
                email=_text(user.get("email")),
                avatar=_text(user.get("avatar"), 1024),
            ),
        )


def mint(
    secret: str,
    app_id: str,
    room: str = "*",
    *,
    audience: str = "jitsi",
    subject: str = "*",
    name: str = "",
    email: str = "",
    user_id: str = "",
    moderator: bool | None = None,
    ttl: float = 3600,
    not_before: float | None = None,
    algorithm: str = "HS256",
    kid: str | None = None,
    now: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A token with Jitsi's claims (``secret`` is the HS256 secret or an RS256 private key PEM)."""
    now = time.time() if now is None else now
    user: dict[str, Any] = {k: v for k, v in (("name", name), ("email", email), ("id", user_id)) if v}
    if moderator is not None:
        user["moderator"] = "true" if moderator else "false"
    claims: dict[str, Any] = {
        "iss": app_id,
        "aud": audience,
        "sub": subject,
        "room": room,
        "iat": int(now),
        "nbf": int(now if not_before is None else not_before),
        "exp": int(now + ttl),
        "context": {"user": user},
    }
    if moderator is not None:
        claims["moderator"] = moderator
    claims.update(extra or {})
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.xmpp.tokens", description="Mint a Jitsi-style JWT.")
    p.add_argument("--secret", help="HS256 secret (default $JWT_APP_SECRET)")
    p.add_argument("--private-key", help="RS256: PEM file of the private key")
    p.add_argument("--kid", help="RS256 key id (header 'kid')")
    p.add_argument("--app-id", help="'iss' (default $JWT_APP_ID)")
    p.add_argument("--audience", default="jitsi")
    p.add_argument("--room", default="*")
    p.add_argument("--name", default="")
    p.add_argument("--email", default="")
    p.add_argument("--id", default="")
    p.add_argument("--moderator", action="store_true")
    p.add_argument("--ttl", type=float, default=3600)
    args = p.parse_args(list(argv) if argv is not None else None)
    import os

    app_id = args.app_id or os.environ.get("JWT_APP_ID", "")
    if not app_id:
        p.error("--app-id or $JWT_APP_ID is required")
    if args.private_key:
        with open(args.private_key) as f:
            key, alg = f.read(), "RS256"
    else:
        key, alg = args.secret or os.environ.get("JWT_APP_SECRET", ""), "HS256"
        if not key:
            p.error("--secret, $JWT_APP_SECRET or --private-key is required")
    print(
        mint(
            key,
            app_id,
            args.room,
            audience=args.audience,
            name=args.name,
            email=args.email,
            user_id=args.id,
            moderator=True if args.moderator else None,
            ttl=args.ttl,
            algorithm=alg,
            kid=args.kid,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
