"""Guests join only once a host is in the room (Jitsi's secure domain, ``ENABLE_GUESTS``).

Sessions on the guest host (``guest.<domain>``, SASL ANONYMOUS) are refused with
``not-authorized`` while no authenticated participant (a session on the login host) is in the
room; the text tells the client to wait, and it retries (as Jicofo's "waiting for the host").
"""

from __future__ import annotations

from ..jid import JID
from ..xml import Element
from .muc import MucError, MucService, Room

WAITING = "waiting for the host: the meeting starts when an authenticated participant joins"


def install(muc: MucService, guest_domain: str, login_domain: str) -> None:
    def check(room: Room | None, frm: JID, to: JID, stanza: Element) -> None:
        if frm.domain != guest_domain:
            return
        if room is None or not any(o.real_jid.domain == login_domain for o in room.occupants.values()):
            raise MucError("not-authorized", WAITING)

    muc.join_checks.append(check)
