"""RFC 4733 events from a WebRTC caller, taken from aiortc's decrypted RTP before its decoder."""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from services.sip import audio, dtmf
from services.sip.meeting import tap_telephone_events


async def test_telephone_events_are_tapped_and_the_rest_goes_to_aiortc() -> None:
    caller, gateway = RTCPeerConnection(), RTCPeerConnection()
    try:
        caller.addTransceiver("audio", direction="sendrecv")
        await caller.setLocalDescription(await caller.createOffer())
        offer = caller.localDescription.sdp
        m_line = next(line for line in offer.splitlines() if line.startswith("m=audio"))
        offer = offer.replace(m_line, m_line + " 110").replace(
            "a=rtpmap:96 opus/48000/2", "a=rtpmap:96 opus/48000/2\r\na=rtpmap:110 telephone-event/48000")
        assert audio.telephone_event_pt(offer) == 110
        await gateway.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await gateway.setLocalDescription(await gateway.createAnswer())
        assert "telephone-event" not in gateway.localDescription.sdp  # aiortc does not negotiate it
        assert "a=rtpmap:110 telephone-event/48000" in audio.with_telephone_event(gateway.localDescription.sdp, 110)

        events: list[tuple[int, int, bytes]] = []
        assert tap_telephone_events(gateway, 110, lambda *e: events.append(e))
        receiver = next(t.receiver for t in gateway.getTransceivers() if t.kind == "audio")
        router = receiver.transport._rtp_router
        event = RtpPacket(payload_type=110, sequence_number=1, timestamp=4800, ssrc=77,
                          payload=dtmf.event_payload(5, True, 960))
        assert router.route_rtp(event) is receiver  # routed to the audio receiver by payload type
        await receiver._handle_rtp_packet(event, arrival_time_ms=0)
        assert events == [(77, 4800, dtmf.event_payload(5, True, 960))]
        decoder = dtmf.EventDecoder()
        assert decoder.feed(*events[0]) == "5"
        # anything else still reaches aiortc (here: a payload type it does not know, dropped there)
        await receiver._handle_rtp_packet(RtpPacket(payload_type=101, ssrc=77, payload=b"\x00" * 4),
                                          arrival_time_ms=0)
        assert len(events) == 1
    finally:
        await caller.close()
        await gateway.close()
