"""Whether the gateway may send a plain-RTP caller media: consent by arrival (no I/O).

A caller's SDP names the address the gateway sends its audio to (``c=``/``m=``), and nothing
proves that address wants it: a forged INVITE (a spoofed UDP source, or a TCP/WebSocket caller
naming someone else's address) would make the gateway stream G.711 at 50 packets a second to a
victim for as long as the call lasts — a reflection and amplification attack. WebRTC answers this
with ICE consent freshness (RFC 7675: no media before consent, none 30 s after it was last
confirmed); plain RTP has no ICE, so consent here is the caller's own RTP arriving from that
address (symmetric RTP, RFC 4961, the "latching" of rtpengine and Asterisk's ``strictrtp``):

* before the first packet from the caller, the gateway sends for at most ``unverified`` seconds
  (a phone sends as soon as it has the answer, so it hears the start of a prompt at once);
* afterwards, it sends while the caller's last packet is less than ``timeout`` seconds old
  (RFC 7675's 30 s by default: a phone with silence suppression still sends comfort noise);
* when consent lapses, sending pauses (the call is not ended) and resumes with the next packet.

Only packets from the offered address's IP count (:class:`services.sip.meeting.PlainRtp` drops
the others), so a caller can direct media only at an address that is sending it RTP.
"""

from __future__ import annotations


class MediaConsent:
    def __init__(self, unverified: float, timeout: float, now: float) -> None:
        self.unverified, self.timeout = unverified, timeout
        self.started = now
        self.last_heard: float | None = None

    def heard(self, now: float) -> None:
        """A packet from the caller's address arrived."""
        self.last_heard = now

    def may_send(self, now: float) -> bool:
        if self.last_heard is None:
            return now - self.started < self.unverified
        return now - self.last_heard < self.timeout
