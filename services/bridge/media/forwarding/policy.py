"""The seam between the packet path and conference intelligence (last-N, simulcast, speakers).

The forwarder asks the conference's :class:`ForwardingPolicy` once per incoming packet which of
the stream's subscribers get it, and hands it the audio levels it reads. The default forwards
everything to everyone; the intelligence modules subclass it (or wrap it) without touching the
forwarding loop. Policies do no I/O: bridge-channel messages go out through ``send_message``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from services.common.bridge_channel import BridgeChannelMessage

if TYPE_CHECKING:
    from .streams import IncomingStream, Subscription

SendMessage = Callable[[str, BridgeChannelMessage], None]  # (endpoint_id, bridge-channel message)
RequestKeyframe = Callable[["IncomingStream", float], None]
"""Ask a stream's sender for a key frame (RFC 4585 PLI, rate-limited):
``rtcp_termination.request_keyframe``, given to each policy at construction."""


class ForwardingPolicy:
    """Forward every stream to every other endpoint of the conference."""

    def __init__(
        self, send_message: SendMessage | None = None, request_keyframe: RequestKeyframe | None = None
    ) -> None:
        self.send_message = send_message
        self.request_keyframe = request_keyframe
        """Ask a stream's sender for a key frame; ``None``: the policy asks for none."""

    def select(
        self, stream: IncomingStream, packet: bytes, payload_type: int, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        """The subscriptions (one per receiving endpoint) that get ``packet`` of ``stream``.
        Called for every RTP packet: keep it cheap. ``packet`` is the decrypted RTP packet,
        ``payload_type`` the one its header carries (read once, by the forwarder, with
        ``packets/rtp.py``)."""
        return subscriptions

    def observe_audio_level(self, stream: IncomingStream, level: int, voice: bool, now: float) -> None:
        """RFC 6464 level (0 = loudest, 127 = silence, in -dBov) of an audio packet."""

    def on_endpoint_added(self, endpoint_id: str) -> None:
        """An endpoint joined the conference."""

    def on_endpoint_removed(self, endpoint_id: str) -> None:
        """An endpoint left (expired)."""

    def on_transport(self, endpoint_id: str, connected: bool) -> None:
        """The endpoint's media transport finished DTLS (``connected``: media can be sent to it)
        or went away."""

    def on_message(self, endpoint_id: str, message: BridgeChannelMessage) -> None:
        """A media-steering bridge-channel message from ``endpoint_id`` (LastNChangedEvent…),
        parsed and validated once by the bridge channel."""


# (conference_id, send, request_keyframe) -> policy
PolicyFactory = Callable[[str, SendMessage, RequestKeyframe], ForwardingPolicy]


def default_policy_factory(
    conference_id: str, send_message: SendMessage, request_keyframe: RequestKeyframe
) -> ForwardingPolicy:
    return ForwardingPolicy(send_message, request_keyframe)
