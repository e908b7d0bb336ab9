"""What one receiver sees of one incoming stream: the forwarding mapping. No I/O.

A receiver may see a stream under another SSRC, with its sequence numbers and timestamps shifted
and its VP8 picture ids rewritten: a simulcast layer shown as the source's one continuous stream
(RFC 7667 section 3.7, a media-switching mixer). :class:`ForwardingMapping` is that mapping as a
value. It is immutable: whoever decides it (the receiver's projection, a
:class:`~.layers.LayerSwitch`: simulcast or VP9 SVC, at a layer switch) makes a new one, so a subscription
knows it must follow by identity alone (``sub.mapping is not projection.mapping``), and a mapping
packets were sent under stays valid for retransmitting them.

The projection owns the mapping; a :class:`~.streams.Subscription` points at the one its packets
are forwarded under now (the identity until a policy says otherwise), and
:meth:`~.streams.Subscription.follow` is the one place that mirrors it into the C loop's
``parley_subscription`` (``native.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..packets import rtp

PayloadRewrite = Callable[[bytearray], None]
"""Rewrites the payload of a packet whose header is already rewritten, in place."""


class ForwardingMapping:
    """Output SSRC, sequence and timestamp offsets (added mod 2^16 and 2^32) and payload rewrite
    for the packets of stream ``source_ssrc``; :attr:`rewrite` says whether anything changes.
    Never changed once made (a change is a new mapping)."""

    __slots__ = ("out_ssrc", "payload_rewrite", "rewrite", "seq_delta", "source_ssrc", "ts_delta")

    def __init__(
        self,
        source_ssrc: int,
        out_ssrc: int | None = None,
        seq_delta: int = 0,
        ts_delta: int = 0,
        payload_rewrite: PayloadRewrite | None = None,
    ) -> None:
        self.source_ssrc = source_ssrc
        self.out_ssrc = source_ssrc if out_ssrc is None else out_ssrc
        self.seq_delta = seq_delta
        self.ts_delta = ts_delta
        self.payload_rewrite = payload_rewrite
        self.rewrite = (
            self.out_ssrc != source_ssrc or seq_delta != 0 or ts_delta != 0 or payload_rewrite is not None
        )

    def apply(self, packet: bytes, seq: int, ts: int) -> bytes | bytearray:
        """``packet`` (sequence number ``seq``, timestamp ``ts``) as the receiver sees it."""
        if not self.rewrite:
            return packet
        out = bytearray(packet)
        rtp.rewrite_in_place(out, seq + self.seq_delta, ts + self.ts_delta, self.out_ssrc)
        if self.payload_rewrite is not None:
            self.payload_rewrite(out)
        return out

    def __repr__(self) -> str:
        return (
            f"ForwardingMapping({self.source_ssrc}, out_ssrc={self.out_ssrc}, seq_delta={self.seq_delta}, "
            f"ts_delta={self.ts_delta}, payload_rewrite={self.payload_rewrite is not None})"
        )
