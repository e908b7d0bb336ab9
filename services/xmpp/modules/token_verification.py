"""The ``room`` claim checked again at MUC join (Jitsi's mod_token_verification).

A session that logged in with a token (services/xmpp/tokens.py) may join only the room its
token names (or any room with ``room: "*"``); the refusal says why, as XEP-0045 ``not-allowed``.
With several broker nodes the session may live on another node: ``claims_of`` then answers
from what that node told at bind, and raises ``LookupError`` for a session no node knows of,
which is refused too (never taken as a login without a token).
"""

from __future__ import annotations

from collections.abc import Callable

from ..jid import JID
from ..tokens import TokenClaims
from ..xml import Element
from .muc import MucError, MucService, Room


def install(muc: MucService, claims_of: Callable[[JID], TokenClaims | None]) -> None:
    def check(room: Room | None, frm: JID, to: JID, stanza: Element) -> None:
        try:
            claims = claims_of(frm)
        except LookupError:
            raise MucError("not-allowed", "your session is not known to the server yet; try again") from None
        if claims is not None and not claims.allows_room(to.node):
            raise MucError("not-allowed", f"token not valid for room {to.node!r} (room claim)")

    muc.join_checks.append(check)
