"""The bridge channel: bridge-channel messages between the bridge and each endpoint.

Two transports carry the same message set (docs/protocols.md#bridge-channel): the Colibri WebSocket
(:mod:`services.bridge.ws.server`) and a WebRTC data channel on the endpoint's own DTLS
association (:mod:`.datachannel`, the Colibri ``data`` content). :mod:`.dispatch` is the one place
that decides what a message from an endpoint does (:mod:`.routing`) and which transport a
message to an endpoint takes.
"""
