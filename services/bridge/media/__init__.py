"""The bridge's media plane: one UDP port, ICE, DTLS-SRTP and RTP/RTCP forwarding.

Entry point: :class:`services.bridge.media.engine.MediaEngine`. One subpackage per layer:
``transport/`` (ICE, STUN, DTLS-SRTP and SCTP through aiortc), ``packets/`` (RTP, RTCP, VP8, RID),
``forwarding/`` (the conference's packet path) and ``allocation/`` (conference intelligence).
"""
