from services.launcher.supervisor import RestartBackoff


def test_backoff_doubles_up_to_the_maximum_while_a_service_keeps_failing() -> None:
    backoff = RestartBackoff(initial=1, maximum=30, reset_after=30)
    assert [backoff.delay(uptime=0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_long_enough_run_starts_the_backoff_again() -> None:
    backoff = RestartBackoff(initial=1, maximum=30, reset_after=30)
    assert [backoff.delay(0.1), backoff.delay(0.1), backoff.delay(0.1)] == [1, 2, 4]
    assert backoff.delay(uptime=45) == 1
    assert backoff.delay(uptime=2) == 2
