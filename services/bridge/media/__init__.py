"""The bridge's media plane: one UDP port, ICE-lite, DTLS-SRTP and RTP/RTCP forwarding.

Entry point: :class:`services.bridge.media.engine.MediaEngine`.
"""
