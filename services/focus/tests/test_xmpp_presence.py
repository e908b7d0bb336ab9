"""Reading MUC presence in the focus's XMPP adapter (no sockets)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from services.focus.xmpp import _real_jid, _status_codes

FORGED_FIRST = """
<presence xmlns='jabber:client' from='room@muc.meet.jitsi/mallory'>
  <x xmlns='http://jabber.org/protocol/muc#user'><item jid='focus@auth.meet.jitsi/focus'/><status code='110'/></x>
  <x xmlns='http://jabber.org/protocol/muc#user'>
    <item affiliation='none' role='participant' jid='guest-1@meet.jitsi/abc'/><status code='100'/>
  </x>
</presence>"""


def test_the_servers_muc_user_payload_wins_over_a_forged_one() -> None:
    el = ET.fromstring(FORGED_FIRST)
    assert _real_jid(el) == "guest-1@meet.jitsi/abc"
    assert _status_codes(el) == {100}


def test_plain_presence() -> None:
    el = ET.fromstring(
        "<presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<item jid='a@b/c'/><status code='201'/><status code='x'/></x></presence>"
    )
    assert _real_jid(el) == "a@b/c" and _status_codes(el) == {201}
    assert _real_jid(ET.fromstring("<presence xmlns='jabber:client'/>")) is None
