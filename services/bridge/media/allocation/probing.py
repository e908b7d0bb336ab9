"""Probing a receiver's downlink upwards with real media: one simulcast layer at a time. No I/O.

A receiver's bandwidth estimate (``bandwidth.py``: its REMB scaled by a loss factor) follows what
it receives: Chrome's receive-side estimator never announces much more than about 1.5 times its
incoming bitrate. The allocator (``allocator.py``) only sends what the estimate covers, so a receiver
put on low layers (at start-up, or after a loss or CPU episode) would stay there: its estimate
has no reason to grow. The bridge sends no padding; instead it tries the next layer.

:class:`StepUpProbe` is one receiver's state. It is fed at every allocation tick with the
receiver's estimate, the loss of a report that arrived since the previous tick (if any) and the
allocation as it stands. When the allocation is bandwidth-limited (``ReceiverAllocation.step_up``:
some forwarded source is below the layer its constraint allows) and the feedback is clean (the
last ``clean_reports`` reports at or below ``loss_limit``, the estimate not falling), it allows one
step beyond the budget -- the highest-preference limited source, one layer up -- no earlier than
``period`` after the previous try. The step is kept when after ``settle`` seconds the reports are
still clean and the estimate held: the receiver's estimate then grows with the rate it gets, and
once the budget alone has reached the step for ``covered_ticks`` ticks the step is dropped. A failed step
(a lossy report, the estimate falling) is reverted and the next try waits twice as long, up to
``max_backoff``. Bad feedback while no step is being tried reverts the newest kept step the same
way; nothing is tried while loss is high.

The allocator reads :attr:`StepUpProbe.floors`: a layer per source that the source gets at least,
whatever the budget says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bandwidth import LOW_LOSS

if TYPE_CHECKING:
    from .allocator import ReceiverAllocation


class StepUpProbe:
    """One receiver's upward probing: the layer steps it is allowed beyond its estimate."""

    __slots__ = (
        "_clean",
        "_covered",
        "_last_estimate",
        "_next_try",
        "_probe_estimate",
        "_probe_reports",
        "_probe_started",
        "_probing",
        "_steps",
        "_wait",
        "clean_reports",
        "covered_ticks",
        "drop_ratio",
        "fall_ratio",
        "floors",
        "loss_limit",
        "max_backoff",
        "period",
        "settle",
    )

    def __init__(
        self,
        *,
        period: float = 3.0,
        settle: float = 3.0,
        max_backoff: float = 60.0,
        clean_reports: int = 2,
        covered_ticks: int = 5,
        loss_limit: float = LOW_LOSS,
        fall_ratio: float = 0.9,
        drop_ratio: float = 0.85,
    ) -> None:
        if not 0 < period <= max_backoff:
            raise ValueError(f"need 0 < period <= max_backoff, got {period}, {max_backoff}")
        self.period = period
        self.settle = settle
        self.max_backoff = max_backoff
        self.clean_reports = clean_reports
        self.covered_ticks = covered_ticks
        self.loss_limit = loss_limit
        self.fall_ratio = fall_ratio
        """The estimate is falling when it is below this share of the previous tick's."""
        self.drop_ratio = drop_ratio
        """A step fails when the estimate goes below this share of the estimate it started at."""
        self.floors: dict[str, int] = {}
        """Source name -> the layer it gets at least (the steps allowed beyond the budget)."""
        self._steps: list[tuple[str, int]] = []  # oldest first; the last is the one being tried
        self._covered: dict[tuple[str, int], int] = {}  # step -> ticks in a row the budget covered it
        self._probing = False
        self._probe_started = 0.0
        self._probe_estimate = 0.0
        self._probe_reports = 0
        self._clean = 0  # clean reports in a row
        self._last_estimate: float | None = None
        self._wait = period
        self._next_try = float("-inf")

    @property
    def probing(self) -> bool:
        """Whether a step is being tried now (not yet kept)."""
        return self._probing

    @property
    def next_try(self) -> float:
        """The earliest time of the next step (``-inf``: as soon as the feedback allows)."""
        return self._next_try

    def on_feedback(
        self, now: float, estimate: float | None, loss: float | None, allocation: ReceiverAllocation
    ) -> bool:
        """One tick: ``estimate`` in bps (``None``: the receiver sends no REMB, nothing to probe),
        ``loss`` the fraction lost (0..1) of a report received since the previous tick, ``None``
        without one; ``allocation`` is the receiver's allocation with the current :attr:`floors`.
        Returns whether :attr:`floors` changed."""
        before = dict(self.floors)
        previous, self._last_estimate = self._last_estimate, estimate
        if estimate is None:
            self._steps.clear()
            self._covered.clear()
            self._probing = False
            self._clean = 0
        else:
            self._advance(now, estimate, previous, loss, allocation)
        self.floors = {}
        for name, layer in self._steps:
            self.floors[name] = max(layer, self.floors.get(name, -1))
        return self.floors != before

    def _advance(
        self,
        now: float,
        estimate: float,
        previous: float | None,
        loss: float | None,
        allocation: ReceiverAllocation,
    ) -> None:
        self._drop_unneeded(now, allocation)
        lossy = loss is not None and loss > self.loss_limit
        falling = previous is not None and estimate < self.fall_ratio * previous
        if lossy or falling:
            self._clean = 0
        elif loss is not None:
            self._clean += 1
        if self._probing:
            if lossy or falling or estimate < self.drop_ratio * self._probe_estimate:
                self._revert(now)
                return
            if loss is not None:
                self._probe_reports += 1
            if now - self._probe_started >= self.settle and self._probe_reports > 0:
                self._probing = False  # kept
                self._wait = self.period
                self._next_try = now + self.period
            return
        if lossy or falling:
            if self._steps:
                self._revert(now)
            return
        step = allocation.step_up
        if step is not None and self._clean >= self.clean_reports and now >= self._next_try:
            self._steps.append(step)
            self._probing = True
            self._probe_started = now
            self._probe_estimate = estimate
            self._probe_reports = 0

    def _revert(self, now: float) -> None:
        """Undo the newest step and wait longer before the next."""
        if self._steps:
            self._covered.pop(self._steps.pop(), None)
        self._probing = False
        self._wait = min(self.max_backoff, self._wait * 2)
        self._next_try = now + self._wait

    def _drop_unneeded(self, now: float, allocation: ReceiverAllocation) -> None:
        """Steps that no longer apply (the source is not forwarded, or its constraint went
        below the step) are forgotten, and so are steps the budget has covered for
        ``covered_ticks`` ticks in a row (the estimate followed; measured layer rates are
        noisy, one tick is not enough); when that is the one being tried, the next try is a
        period away."""
        kept = []
        for step in self._steps:
            name, layer = step
            if allocation.layers.get(name, -1) < layer:
                self._covered.pop(step, None)
                continue
            # (a source whose layers read unmeasured for a moment has no within_budget entry)
            if allocation.within_budget.get(name, -1) >= layer:
                self._covered[step] = self._covered.get(step, 0) + 1
                if self._covered[step] >= self.covered_ticks:
                    del self._covered[step]
                    continue
            else:
                self._covered.pop(step, None)
            kept.append(step)
        if self._probing and (not kept or kept[-1] != self._steps[-1]):
            self._probing = False
            self._next_try = now + self._wait
        self._steps = kept
