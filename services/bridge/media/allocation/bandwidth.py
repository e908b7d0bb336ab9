"""Per-receiver downlink bandwidth estimate, from the receiver's own RTCP feedback. No I/O.

What a receiver tells the bridge about the streams the bridge sends it:

* REMB (draft-alvestrand-rmcat-remb): the receiver's delay-based estimate of what it can take;
* receiver-report blocks (RFC 3550): the fraction of packets lost since the previous report.

:class:`DownlinkEstimator` combines them the way the loss-based half of Google Congestion Control
does (draft-ietf-rmcat-gcc-02 section 6), applied to the REMB: above 10 % loss the estimate drops
by half the loss ratio per report, below 2 % it recovers 5 % per report up to the REMB, in between
it holds. When the bridge numbers what it sends the receiver and the receiver answers with
transport-cc feedback, the send-side estimate (``send_side_bwe.py``, delay trend and loss of its
own) replaces both (:meth:`DownlinkEstimator.on_send_side`); a receiver that sends none of these
has no estimate (``None``) and is not limited by bandwidth.

RTCP parsing itself is ``packets/rtcp.py``'s; this module takes the numbers (the latest REMB the receiver
sent, whichever streams it names, and each new receiver report once). The estimate feeds the
allocator (``allocator.py``, layer choice), the upward probe that lets a receiver go one layer beyond
it (``probing.py``) and the ``ConnectionStats`` message.
"""

from __future__ import annotations

from services.common.bridge_channel import ConnectionStats

LOW_LOSS = 0.02
HIGH_LOSS = 0.10


class DownlinkEstimator:
    """The estimated downlink of one receiver, in bits per second: the latest REMB scaled by a
    loss factor (1.0 without loss; it falls on heavy loss and recovers 5 % per clean report)."""

    __slots__ = (
        "_announced",
        "_last_report",
        "_loss_factor",
        "_remb",
        "_send_side",
        "max_bps",
        "min_bps",
        "report_interval",
    )

    def __init__(
        self, min_bps: int = 30_000, max_bps: int = 20_000_000, report_interval: float = 5.0
    ) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"need 0 < min_bps <= max_bps, got {min_bps}, {max_bps}")
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.report_interval = report_interval
        self._remb: int | None = None
        self._send_side: int | None = None
        self._loss_factor = 1.0
        self._announced: int | None = None
        self._last_report = float("-inf")

    def on_remb(self, bps: int, now: float) -> None:
        """A REMB from the receiver (its delay-based estimate for everything we send it)."""
        self._remb = bps

    def on_send_side(self, bps: int, now: float) -> None:
        """The send-side estimate from the receiver's transport-cc feedback: used from now on."""
        self._send_side = bps

    @property
    def source(self) -> str | None:
        """What the estimate comes from: ``"transport-cc"``, ``"remb"`` or ``None``."""
        if self._send_side is not None:
            return "transport-cc"
        return None if self._remb is None else "remb"

    def on_loss(self, fraction_lost: int, now: float) -> None:
        """A report block's ``fraction lost`` (0..255, RFC 3550 6.4.1) for a stream we send."""
        if not 0 <= fraction_lost <= 255:
            raise ValueError(f"fraction_lost must be 0..255, got {fraction_lost}")
        loss = fraction_lost / 256
        if loss < LOW_LOSS:
            self._loss_factor = min(1.0, self._loss_factor * 1.05)
        elif loss > HIGH_LOSS:
            self._loss_factor = max(0.05, self._loss_factor * (1 - 0.5 * loss))

    def estimate(self, now: float) -> int | None:
        """The current estimate (bps), ``None`` while the receiver has sent no REMB."""
        if self._send_side is not None:  # its own loss-based half already applied
            return max(self.min_bps, min(self.max_bps, self._send_side))
        if self._remb is None:
            return None
        return max(self.min_bps, min(self.max_bps, int(self._remb * self._loss_factor)))

    def connection_stats(self, now: float) -> ConnectionStats | None:
        """A ``ConnectionStats`` to send now: at most every ``report_interval``, and earlier when
        the estimate moved by more than a quarter; ``None`` when there is nothing to say."""
        value = self.estimate(now)
        if value is None:
            return None
        moved = self._announced is None or abs(value - self._announced) > self._announced / 4
        if not moved and now - self._last_report < self.report_interval:
            return None
        self._announced = value
        self._last_report = now
        return ConnectionStats(estimated_downlink_bandwidth=value)
