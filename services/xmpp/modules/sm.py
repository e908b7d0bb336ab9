"""Stream Management (XEP-0198) is negotiated on the stream (``session.py``); here it is only
advertised in the server's disco#info."""

from __future__ import annotations

from ..hooks import ServerIq
from ..stream_management import SM_NS
from ..xml import Element


class StreamManagementFeature:
    features = (SM_NS,)

    def on_iq(self, event: ServerIq) -> Element | None:
        return None
