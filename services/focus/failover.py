"""The focus's failure policy as pure decisions: where to place a participant, and what an
allocation failure means (retry on another bridge, move the conference, or give up).

:class:`~.focus.Focus` asks these functions and performs what they say; nothing here does I/O, so
each branch is tested directly (``tests/test_failover.py``). The policy: a bridge in graceful
shutdown answers 503 to a new conference and keeps its others, so the focus tries another bridge
for this conference only;
an unreachable bridge (connection refused, timeout, 5xx) is failed and its conferences move; a
bridge that forgot the conference (404) is not failed, but the conference moves; any other error
(a 4xx, an answer the focus cannot use) is the focus's or the participant's problem, and another
bridge would not help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

ATTEMPTS = 3  # allocations tried for one invitation before the participant is left waiting


@dataclass(frozen=True)
class AllocationFailure:
    """What went wrong with one allocation (a Colibri POST or PATCH) on one bridge."""

    creating: bool  # a POST creating the conference on that bridge (not a PATCH of it)
    status: int | None = None  # the bridge's HTTP status, when it answered
    unreachable: bool = False  # no answer (connection refused/reset, timeout) or a 5xx
    bad_answer: bool = False  # the bridge answered, but not with something the focus can offer


@dataclass(frozen=True)
class Decision:
    """What to do after an :class:`AllocationFailure`."""

    retry: bool  # try the next attempt (on whichever bridge placement then picks)
    avoid_bridge: bool = False  # leave this bridge out of placement for the rest of this invitation
    fail_bridge: bool = False  # report the bridge as failed (its other conferences move too)
    move_conference: bool = False  # the conference was on this bridge: re-create it elsewhere


GIVE_UP = Decision(retry=False)


def after_failure(failure: AllocationFailure, conference_on_bridge: bool) -> Decision:
    """The decision for one failed allocation; ``conference_on_bridge`` says whether the
    conference lives on the bridge that failed (then its other participants must move)."""
    if failure.status == 503 and failure.creating:
        # Graceful shutdown: no new conferences there, but its existing ones are fine.
        return Decision(retry=True, avoid_bridge=True)
    if failure.unreachable:
        return Decision(retry=True, fail_bridge=True, move_conference=conference_on_bridge)
    if failure.status == 404:
        # The bridge forgot the conference (expired, restarted): re-create it, on any bridge.
        return Decision(retry=True, move_conference=conference_on_bridge)
    return GIVE_UP


def place(
    current: str | None,
    current_usable: bool,
    select: Callable[[tuple[str, ...]], str | None],
    avoid: frozenset[str] | set[str] = frozenset(),
) -> str | None:
    """The bridge for the next allocation: the conference's own bridge while it is usable (a
    conference lives on one bridge), else the selector's pick among the others (``select`` gets
    the bridges to leave out). ``None``: no bridge, the participant waits for one."""
    if current is not None and current_usable:
        return current
    return select(tuple(sorted(avoid)))


@dataclass
class Invitation:
    """The state of one invitation across its attempts: how many remain, which bridges to avoid."""

    attempts: int = ATTEMPTS
    avoid: set[str] = field(default_factory=set)

    def next_attempt(self) -> bool:
        """Use one attempt; False when none is left (the participant waits for a bridge event)."""
        if self.attempts <= 0:
            return False
        self.attempts -= 1
        return True

    def failed(self, bridge_id: str, failure: AllocationFailure, conference_bridge: str | None) -> Decision:
        decision = after_failure(failure, conference_bridge == bridge_id)
        if decision.avoid_bridge:
            self.avoid.add(bridge_id)
        return decision


def bridge_gone(conference_bridge: str | None, known: Callable[[str], bool]) -> bool:
    """A restored conference whose bridge is no longer known must move before anyone is invited."""
    return conference_bridge is not None and not known(conference_bridge)
