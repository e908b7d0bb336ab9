"""A participant whose bridge channel is the data channel the bridge opens (Colibri ``data``).

It joins the way the focus would have it join: a Colibri allocation with an ``sctpconnection``,
the focus's Jingle offer (:mod:`services.focus.offer`) rendered as SDP by
:class:`services.common.jingle_sdp.SdpOffer` (audio, video and ``m=application ... webrtc-datachannel``
BUNDLEd on one transport), an aiortc answer PATCHed back as the focus would. Used by
``test_bridge_sctp.py`` and ``bench/bridge_datachannel.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from services.common import colibri, jingle, jingle_sdp
from services.common.jingle import Jingle
from services.common.jingle_sdp import SdpOffer
from services.focus import offer
from tests.integration.media_client import ColourTrack, ToneTrack
from tests.integration.participant import wait_until
from tests.integration.test_bridge_control_support import dumps

EXPIRE = 60


def allocate_request(endpoint: str, conference_id: str | None) -> bytes:
    """The focus's allocation for one endpoint with ``enable-sctp``: audio, video and data."""
    request = offer.allocation_request(endpoint, colibri_id=conference_id, expire=EXPIRE, enable_sctp=True)
    return dumps(colibri.dump(request))


def offer_sdp(endpoint: str, allocated: colibri.Conference) -> tuple[offer.Allocation, Jingle, str]:
    """The allocation, the focus's session-initiate for it and that offer as SDP."""
    allocation = offer.read_allocation(allocated, endpoint)
    assert allocation.sctp  # the bridge granted the sctpconnection
    initiate = offer.session_initiate(f"sid-{endpoint}", "focus@test", allocation, {}, ice_lite=True)
    return allocation, initiate, SdpOffer(initiate).render()


def accept_patch(conference_id: str, endpoint: str, allocation: offer.Allocation, answer_sdp: str) -> bytes:
    """What the focus PATCHes from the session-accept of an SDP answer: transport, sources,
    codecs, and the sctpconnection kept (Colibri REST v1 join example, step 6; docs/protocols.md#colibri-rest)."""
    answered = jingle_sdp.parse_sdp_answer(answer_sdp, owner=endpoint, name_prefix=endpoint)
    contents = []
    for content in answered:
        channel_id = allocation.channels[content.name]
        if content.name == "data":
            sctp = colibri.SctpConnection(id=channel_id, endpoint=endpoint, expire=EXPIRE)
            contents.append(colibri.Content(name="data", sctpconnections=[sctp]))
        else:
            assert content.description is not None
            fields = jingle.channel_update(content.description)
            channel = colibri.Channel(id=channel_id, endpoint=endpoint, expire=EXPIRE, **fields)  # type: ignore[arg-type]
            contents.append(colibri.Content(name=content.name, channels=[channel]))  # type: ignore[arg-type]
    transport = answered[0].transport
    assert transport is not None
    bundle = colibri.ChannelBundle(id=endpoint, transport=jingle.transport_to_colibri(transport))
    return dumps(
        colibri.dump(colibri.Conference(id=conference_id, contents=contents, channel_bundles=[bundle]))
    )


class DataChannelParticipant:
    """An aiortc peer that answers the focus's offer (with the data content) and takes the data
    channel the bridge opens."""

    def __init__(
        self, name: str, rgb: tuple[int, int, int] = (90, 90, 90), tone: float = 440.0, *, media: bool = True
    ) -> None:
        self.name = name
        self.rgb, self.tone, self.media = rgb, tone, media
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.channel: RTCDataChannel | None = None
        self.channels: list[RTCDataChannel] = []
        self.received: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.offer_sdp = ""
        self.answer_sdp = ""
        self.pc.on("datachannel", self._on_datachannel)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.channels.append(channel)
        self.channel = channel
        channel.on("message", self._on_message)

    def _on_message(self, text: str) -> None:
        message = json.loads(text)
        self.received.append(message)
        self.inbox.put_nowait(message)

    async def join(self, http: httpx.AsyncClient, conference_id: str | None) -> str:
        body = allocate_request(self.name, conference_id)
        if conference_id is None:
            response = await http.post("/colibri/conferences", content=body)
        else:
            response = await http.patch(f"/colibri/conferences/{conference_id}", content=body)
        assert response.status_code == 200, response.text
        allocated = colibri.parse_conference(response.content)
        assert allocated.id is not None
        allocation, _, self.offer_sdp = offer_sdp(self.name, allocated)
        await self.pc.setRemoteDescription(RTCSessionDescription(self.offer_sdp, "offer"))
        for transceiver in self.pc.getTransceivers() if self.media else ():
            track = ToneTrack(self.tone) if transceiver.mid == "audio" else ColourTrack(self.rgb)
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendrecv"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.answer_sdp = self.pc.localDescription.sdp
        patch = accept_patch(allocated.id, self.name, allocation, self.answer_sdp)
        response = await http.patch(f"/colibri/conferences/{allocated.id}", content=patch)
        assert response.status_code == 200, response.text
        return allocated.id

    def send(self, message: dict[str, Any]) -> None:
        assert self.channel is not None and self.channel.readyState == "open"
        self.channel.send(json.dumps(message))

    async def next(self, colibri_class: str, within: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first received message of that class (and those field values), consumed."""

        def find() -> dict[str, Any] | None:
            for m in self.received:
                if m.get("colibriClass") == colibri_class and all(m.get(k) == v for k, v in match.items()):
                    return m
            return None

        assert await wait_until(lambda: find() is not None, within), (
            f"{self.name} got no {colibri_class} {match}; got {self.received}"
        )
        found = find()
        assert found is not None
        self.received.remove(found)
        return found

    async def close(self) -> None:
        await self.pc.close()
