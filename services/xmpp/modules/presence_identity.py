"""Who an occupant is, stamped by the server into its room presence (Jitsi's
mod_presence_identity): ``<identity><user><id/><name/><email/><avatar/></user></identity>`` from
the token's ``context.user``, or the account name of an internal login. Parley adds
``<moderator>true|false</moderator>`` inside ``<user>`` when the token has a ``moderator`` claim,
for the focus, which grants moderator rights. A client's own ``<identity>`` is dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from ..jid import JID
from ..tokens import TokenClaims
from ..xml import CLIENT_NS, Element
from .muc import MucService


def identity_element(claims: TokenClaims | None, account: str | None) -> Element | None:
    if claims is None and account is None:
        return None
    identity = Element("identity", CLIENT_NS)
    user = identity.sub("user")
    if claims is not None:
        u = claims.user
        for name, value in (("id", u.id), ("name", u.name), ("email", u.email), ("avatar", u.avatar)):
            if value:
                user.sub(name, text=value)
        if claims.moderator is not None:
            user.sub("moderator", text="true" if claims.moderator else "false")
    else:
        assert account is not None
        user.sub("id", text=account)
        user.sub("name", text=account)
    return identity


def install(
    muc: MucService,
    claims_of: Callable[[JID], TokenClaims | None],
    account_of: Callable[[JID], str | None],
) -> None:
    def stamp(frm: JID) -> list[Element]:
        try:
            claims = claims_of(frm)
        except LookupError:  # a session gone with its node: nothing to say about it
            return []
        el = identity_element(claims, account_of(frm))
        return [el] if el is not None else []

    muc.stamped.add(("identity", CLIENT_NS))
    muc.presence_stamps.append(stamp)
