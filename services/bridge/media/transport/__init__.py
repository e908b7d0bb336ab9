"""How media reaches an endpoint: ICE (UDP and TCP), STUN discovery, and the aiortc adapter for
DTLS-SRTP and SCTP. The engine (``media/engine.py``) owns the sockets and uses these."""
