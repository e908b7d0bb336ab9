"""The focus's failure policy: each branch of :func:`failover.after_failure`, placement, attempts."""

from __future__ import annotations

from services.focus import failover
from services.focus.failover import AllocationFailure, Decision


def test_graceful_shutdown_refuses_a_new_conference_try_another_bridge() -> None:
    d = failover.after_failure(AllocationFailure(creating=True, status=503, unreachable=True), False)
    assert d == Decision(retry=True, avoid_bridge=True)  # the bridge keeps its other conferences


def test_503_on_a_patch_is_a_failed_bridge() -> None:
    d = failover.after_failure(AllocationFailure(creating=False, status=503, unreachable=True), True)
    assert d == Decision(retry=True, fail_bridge=True, move_conference=True)


def test_unreachable_bridge_fails_and_moves_only_a_conference_that_lives_there() -> None:
    failure = AllocationFailure(creating=True, unreachable=True)
    assert failover.after_failure(failure, True) == Decision(
        retry=True, fail_bridge=True, move_conference=True
    )
    assert failover.after_failure(failure, False) == Decision(retry=True, fail_bridge=True)


def test_forgotten_conference_moves_without_failing_the_bridge() -> None:
    failure = AllocationFailure(creating=False, status=404)
    assert failover.after_failure(failure, True) == Decision(retry=True, move_conference=True)
    assert failover.after_failure(failure, False) == Decision(retry=True)


def test_other_errors_give_up() -> None:
    assert failover.after_failure(AllocationFailure(creating=True, status=400), True) is failover.GIVE_UP
    assert failover.after_failure(AllocationFailure(creating=False, bad_answer=True), True) == Decision(
        retry=False
    )


def test_place_keeps_a_usable_bridge_else_asks_the_selector_without_avoided_ones() -> None:
    asked: list[tuple[str, ...]] = []

    def select(exclude: tuple[str, ...]) -> str | None:
        asked.append(exclude)
        return next((b for b in ("jvb1", "jvb2") if b not in exclude), None)

    assert failover.place("jvb9", True, select) == "jvb9" and asked == []
    assert failover.place("jvb9", False, select) == "jvb1"
    assert failover.place(None, False, select, {"jvb1"}) == "jvb2"
    assert failover.place(None, False, select, {"jvb2", "jvb1"}) is None
    assert asked[-1] == ("jvb1", "jvb2")


def test_invitation_counts_attempts_and_remembers_refusing_bridges() -> None:
    inv = failover.Invitation(attempts=2)
    assert inv.next_attempt()
    d = inv.failed("jvb1", AllocationFailure(creating=True, status=503, unreachable=True), None)
    assert d.retry and inv.avoid == {"jvb1"}
    assert inv.next_attempt()
    d = inv.failed("jvb2", AllocationFailure(creating=True, unreachable=True), "jvb2")
    assert d.move_conference and inv.avoid == {"jvb1"}  # a failed bridge is left out by the registry
    assert not inv.next_attempt()


def test_bridge_gone() -> None:
    assert failover.bridge_gone("jvb1", lambda b: False)
    assert not failover.bridge_gone("jvb1", lambda b: True)
    assert not failover.bridge_gone(None, lambda b: False)
