from services.bridge.media.transport.stun_discovery import AddressPlan, plan_candidates


def test_configured_addresses_win_over_stun() -> None:
    plan = plan_candidates(("203.0.113.5",), "0.0.0.0", [("198.51.100.1", "10.0.0.2")])
    assert plan == AddressPlan(("203.0.113.5",))


def test_mapped_address_beside_the_local_one() -> None:
    plan = plan_candidates((), "0.0.0.0", [("198.51.100.1", "10.0.0.2"), ("198.51.100.1", "10.0.0.2")])
    assert plan == AddressPlan(("10.0.0.2",), (("198.51.100.1", "10.0.0.2"),))


def test_no_nat_means_no_srflx() -> None:
    assert plan_candidates((), "0.0.0.0", [("192.0.2.9", "192.0.2.9")]) == AddressPlan(("192.0.2.9",))


def test_nothing_learned_falls_back_to_the_bind_address() -> None:
    assert plan_candidates((), "0.0.0.0", []) == AddressPlan(("127.0.0.1",))
    assert plan_candidates((), "10.1.1.1", []) == AddressPlan(("10.1.1.1",))


def test_bound_address_is_the_host_candidate_and_junk_mappings_are_ignored() -> None:
    plan = plan_candidates((), "10.1.1.1", [("0.0.0.0", "10.1.1.1"), ("224.0.0.1", "x"), ("not-an-ip", "y")])
    assert plan == AddressPlan(("10.1.1.1",))
