"""TURN REST credentials: the time-limited username/password scheme coturn calls ``use-auth-secret``.

The broker hands them out (XEP-0215, ``services/xmpp/modules/extdisco.py``) and coturn checks them
against the same shared secret (``static-auth-secret``), so nothing is stored per user. The scheme is
the one of draft-uberti-behave-turn-rest-00 section 2.2, which coturn and Jitsi's
``mod_external_services`` implement:

- username: ``<expiry as a Unix timestamp>:<any identifier>``;
- password: ``base64(HMAC-SHA1(secret, username))``.

coturn refuses a username whose timestamp is in the past.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str
    expires: int  # Unix time


def turn_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def turn_credential(secret: str, ident: str, lifetime: int, now: float) -> TurnCredential:
    """Credentials valid for ``lifetime`` seconds from ``now``; ``ident`` names the user (no ':')."""
    if not secret:
        raise ValueError("empty TURN secret")
    expires = int(now) + int(lifetime)
    username = f"{expires}:{ident.replace(':', '_')}"
    return TurnCredential(username, turn_password(secret, username), expires)
