"""The bridge's ICE agent: authentication, role conflicts, checks, nomination, the media pair."""

from __future__ import annotations

from aioice import stun

from services.bridge.media.transport import aiortc_adapter as adapter
from services.bridge.media.transport import ice
from services.bridge.media.transport.ice import IceAgent

LOCAL = [("127.0.0.1", 10000), ("10.99.0.1", 10000)]
PEER_UFRAG, PEER_PWD = "peer", "peer-password-0123456789"


def request(
    agent: IceAgent,
    *,
    pwd: str | None = None,
    remote: str = PEER_UFRAG,
    use_candidate: bool = False,
    local: str | None = None,
    controlling: bool = True,
    tie_breaker: int = (1 << 64) - 1,
    priority: int = 1853817087,
) -> adapter.StunBindingRequest:
    data = adapter.binding_request(
        remote,
        local or agent.local_ufrag,
        pwd or agent.local_pwd,
        use_candidate=use_candidate,
        controlling=controlling,
        tie_breaker=tie_breaker,
        priority=priority,
    )
    return adapter.parse_binding_request(data)


def bridge(controlling: bool = True, tie_breaker: int | None = None) -> IceAgent:
    agent = IceAgent(controlling=controlling, tie_breaker=tie_breaker)
    agent.set_local_candidates(LOCAL)
    agent.set_remote(PEER_UFRAG, PEER_PWD)
    return agent


def answer(datagram: bytes, source: tuple[str, int], *, pwd: str = PEER_PWD) -> tuple[bytes, adapter.StunBindingRequest]:
    """The peer's signed success response to one of the bridge's checks (and the parsed check)."""
    parsed = stun.parse_message(datagram)
    assert parsed.check_message_integrity(PEER_PWD.encode())
    check = adapter.parse_binding_request(datagram)
    return adapter.binding_success(check, source, pwd), check


class Network:
    """Delivers the bridge's checks to a peer that answers only on the pairs in ``working``."""

    def __init__(self, agent: IceAgent, working: set[tuple[int, tuple[str, int]]]) -> None:
        self.agent, self.working = agent, working
        self.checks: list[tuple[int, tuple[str, int], adapter.StunBindingRequest]] = []

    def run(self, start: float, seconds: float, step: float = 0.01) -> float:
        now = start
        while now < start + seconds:
            for local, remote, datagram in self.agent.poll(now):
                response, check = answer(datagram, LOCAL[local])
                self.checks.append((local, remote, check))
                if (local, remote) in self.working:
                    self.agent.handle_response(response, local, remote, now)
            now += step
        return now


def test_credentials_are_random_and_long_enough() -> None:
    a, b = IceAgent(), IceAgent()
    assert a.local_ufrag != b.local_ufrag and len(a.local_ufrag) >= 4 and len(a.local_pwd) >= 22
    assert a.tie_breaker < 1 << 63 and a.transaction_prefix != b.transaction_prefix


def test_wrong_password_or_remote_ufrag_is_unauthorized() -> None:
    agent = bridge()
    for bad in (request(agent, pwd="x" * 24), request(agent, remote="intruder")):
        outcome = agent.handle_request(bad, 0, ("10.0.0.1", 5000))
        assert not outcome.authenticated and agent.selected is None
        assert stun.parse_message(outcome.response).error_code == 401  # type: ignore[arg-type]
    assert agent.pairs == {} and agent.poll(0.0) == []


def test_a_peer_that_must_control_wins_and_the_bridge_follows_its_nomination() -> None:
    """A light client (or a peer told the bridge is ICE-lite) keeps the controlling role with the
    largest tie-breaker; the bridge then takes the pair of its USE-CANDIDATE check."""
    agent = bridge()
    outcome = agent.handle_request(request(agent), 0, ("10.0.0.1", 5000))
    assert outcome.authenticated and outcome.address_selected and not agent.controlling
    assert agent.selected == (0, ("10.0.0.1", 5000)) and agent.role_conflicts == 1
    response = stun.parse_message(outcome.response)  # type: ignore[arg-type]
    assert response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("10.0.0.1", 5000)
    assert response.check_message_integrity(agent.local_pwd.encode())
    outcome = agent.handle_request(request(agent), 1, ("10.0.0.2", 6000))
    assert not outcome.address_selected and agent.selected == (0, ("10.0.0.1", 5000))
    outcome = agent.handle_request(request(agent, use_candidate=True), 1, ("10.0.0.2", 6000))
    assert outcome.address_selected and agent.selected == (1, ("10.0.0.2", 6000)) and agent.nominated
    assert agent.checks == 3


def test_role_conflict_with_a_smaller_tie_breaker_is_answered_487() -> None:
    agent = bridge(tie_breaker=1000)
    outcome = agent.handle_request(request(agent, tie_breaker=999), 0, ("10.0.0.1", 5000))
    assert outcome.authenticated and not outcome.address_selected and agent.controlling
    conflict = stun.parse_message(outcome.response)  # type: ignore[arg-type]
    assert conflict.error_code == 487 and conflict.check_message_integrity(agent.local_pwd.encode())
    # a controlled peer is answered, and its check triggers one of ours on that pair
    outcome = agent.handle_request(request(agent, controlling=False, tie_breaker=5), 0, ("10.0.0.1", 5000))
    assert adapter.is_binding_success(outcome.response)  # type: ignore[arg-type]
    assert agent.selected is None  # controlling: a check from the peer selects nothing
    ((local, remote, datagram),) = agent.poll(0.0)
    check = adapter.parse_binding_request(datagram)
    assert (local, remote) == (0, ("10.0.0.1", 5000)) and check.local_ufrag == PEER_UFRAG
    assert check.message.attributes["ICE-CONTROLLING"] == 1000 and not check.use_candidate


def test_controlled_bridge_takes_control_from_a_controlled_peer_with_a_smaller_tie_breaker() -> None:
    agent = bridge(controlling=False, tie_breaker=1000)
    outcome = agent.handle_request(request(agent, controlling=False, tie_breaker=10), 0, ("10.0.0.1", 5000))
    assert adapter.is_binding_success(outcome.response) and agent.controlling  # type: ignore[arg-type]
    agent = bridge(controlling=False, tie_breaker=10)
    outcome = agent.handle_request(request(agent, controlling=False, tie_breaker=1000), 0, ("10.0.0.1", 5000))
    assert stun.parse_message(outcome.response).error_code == 487  # type: ignore[arg-type]


def test_controlling_bridge_checks_every_pair_and_nominates_the_best_valid_one() -> None:
    agent = bridge()
    peer_lo, peer_veth = ("127.0.0.1", 40000), ("10.99.0.1", 40001)
    assert agent.add_remote_candidates([("127.0.0.1", 40000, 2122260223), ("10.99.0.1", 40001, 2122194687)]) == 2
    assert len(agent.pairs) == 4
    # only the two same-address pairs work, the loopback one has the higher priority
    net = Network(agent, {(0, peer_lo), (1, peer_veth)})
    net.run(0.0, 1.0)
    nominations = [(local, remote) for local, remote, check in net.checks if check.use_candidate]
    assert nominations == [(0, peer_lo)]
    assert agent.nominated and agent.selected == (0, peer_lo)
    assert {(p.local, p.remote): p.state for p in agent.pairs.values()} == {
        (0, peer_lo): "succeeded",
        (1, peer_veth): "succeeded",
        (0, peer_veth): "in-progress",
        (1, peer_lo): "in-progress",
    }
    # the checks are paced and retransmitted until the pairs fail
    net.run(1.0, 8.0)
    assert {p.state for p in agent.pairs.values()} == {"succeeded", "failed"}
    per_pair = sum(1 for local, remote, _ in net.checks if (local, remote) == (0, peer_veth))
    assert per_pair == ice.MAX_TRANSMISSIONS
    assert agent.next_time(9.0) is None


def test_nomination_waits_for_better_pairs_then_gives_up_on_them() -> None:
    agent = bridge()
    agent.add_remote_candidates([("10.99.0.1", 40001, 2122194687), ("127.0.0.1", 40000, 2122260223)])
    net = Network(agent, {(1, ("10.99.0.1", 40001))})
    net.run(0.0, 0.3)
    assert agent.selected == (1, ("10.99.0.1", 40001)) and not agent.nominated  # provisional
    assert not any(check.use_candidate for *_, check in net.checks)
    net.run(0.3, 1.0)
    assert agent.nominated and agent.selected == (1, ("10.99.0.1", 40001))


def test_a_response_from_another_address_fails_the_pair() -> None:
    agent = bridge()
    agent.add_remote_candidates([("10.0.0.1", 5000, 100)])
    ((local, remote, datagram),) = agent.poll(0.0)
    response, _ = answer(datagram, LOCAL[local])
    assert not agent.handle_response(response, local, ("10.0.0.1", 5999), 0.0)
    assert agent.pairs[(0, remote)].state == "failed" and agent.selected is None


def test_unsigned_or_forged_responses_are_ignored() -> None:
    agent = bridge()
    agent.add_remote_candidates([("10.0.0.1", 5000, 100)])
    ((local, remote, datagram),) = agent.poll(0.0)
    forged, _ = answer(datagram, LOCAL[local], pwd="not-the-peer-password-xx")
    assert not agent.handle_response(forged, local, remote, 0.0)
    assert not agent.handle_response(b"\x01\x01garbage", local, remote, 0.0)
    assert agent.pairs[(0, remote)].state == "in-progress"


def test_role_conflict_response_switches_role_and_checks_again() -> None:
    agent = bridge()
    agent.add_remote_candidates([("10.0.0.1", 5000, 100)])
    ((local, remote, datagram),) = agent.poll(0.0)
    check = adapter.parse_binding_request(datagram)
    conflict = stun.Message(
        message_method=stun.Method.BINDING, message_class=stun.Class.ERROR, transaction_id=check.transaction_id
    )
    conflict.attributes["ERROR-CODE"] = (487, "Role Conflict")
    conflict.add_message_integrity(PEER_PWD.encode())
    conflict.add_fingerprint()
    agent.handle_response(bytes(conflict), local, remote, 0.0)
    assert not agent.controlling
    ((_, _, again),) = agent.poll(0.01)
    assert "ICE-CONTROLLED" in adapter.parse_binding_request(again).message.attributes


def test_peer_reflexive_candidates_and_limits() -> None:
    agent = bridge()
    # mDNS names and other transports' garbage are not paired; the check teaches the address
    assert agent.add_remote_candidates([("5c1f7c3a.local", 40000, 1), ("10.0.0.1", 0, 1)]) == 0
    agent.handle_request(request(agent, controlling=False, tie_breaker=1, priority=77), 1, ("10.0.0.7", 40000))
    assert agent.remote_candidates == {("10.0.0.7", 40000): 77}
    assert set(agent.pairs) == {(1, ("10.0.0.7", 40000))}
    assert agent.poll(0.0)[0][:2] == (1, ("10.0.0.7", 40000))  # the triggered check first
    many = [(f"10.1.0.{i}", 5000, 1) for i in range(100)]
    agent.add_remote_candidates(many)
    assert len(agent.remote_candidates) == ice.MAX_REMOTE_CANDIDATES


def test_dtls_on_a_proven_pair_becomes_the_media_pair() -> None:
    agent = bridge()
    agent.add_remote_candidates([("127.0.0.1", 40000, 200), ("10.99.0.1", 40001, 100)])
    net = Network(agent, {(0, ("127.0.0.1", 40000))})
    net.run(0.0, 0.05)
    assert agent.selected == (0, ("127.0.0.1", 40000))
    assert not agent.dtls_from(1, ("10.99.0.1", 40001))  # never proven: stays
    agent.handle_request(request(agent, controlling=False, tie_breaker=1), 1, ("10.99.0.1", 40001))
    assert agent.owns(1, ("10.99.0.1", 40001))
    assert agent.dtls_from(1, ("10.99.0.1", 40001)) and agent.selected == (1, ("10.99.0.1", 40001))
    assert not agent.dtls_from(1, ("10.99.0.1", 40001))


def test_ice_restart_checks_again_with_the_new_credentials() -> None:
    agent = bridge()
    agent.add_remote_candidates([("10.0.0.1", 5000, 100)])
    Network(agent, {(0, ("10.0.0.1", 5000))}).run(0.0, 1.0)
    assert agent.nominated
    agent.set_remote("peer2", "another-password-0123456")
    assert not agent.nominated and agent.pairs[(0, ("10.0.0.1", 5000))].state == "frozen"
    ((_, _, datagram),) = agent.poll(2.0)
    assert adapter.parse_binding_request(datagram).local_ufrag == "peer2"


def test_a_late_role_conflict_answer_does_not_switch_back() -> None:
    """The check went out controlling, the peer's own check made the bridge controlled meanwhile;
    the peer's 487 to the old check must leave the bridge controlled."""
    agent = bridge()
    agent.add_remote_candidates([("10.0.0.1", 5000, 100)])
    ((local, remote, datagram),) = agent.poll(0.0)
    agent.handle_request(request(agent), local, remote)  # the peer wins the tie-break
    assert not agent.controlling
    check = adapter.parse_binding_request(datagram)
    conflict = stun.Message(
        message_method=stun.Method.BINDING, message_class=stun.Class.ERROR, transaction_id=check.transaction_id
    )
    conflict.attributes["ERROR-CODE"] = (487, "Role Conflict")
    conflict.add_message_integrity(PEER_PWD.encode())
    agent.handle_response(bytes(conflict), local, remote, 0.0)
    assert not agent.controlling


def test_ice_tcp_connections_pair_only_with_the_tcp_candidate_and_rank_below_udp() -> None:
    from services.bridge.media.transport.ice_tcp import TcpPeer

    agent = IceAgent()
    agent.set_local_candidates(LOCAL, tcp=[("127.0.0.1", 4443)])
    agent.set_remote(PEER_UFRAG, PEER_PWD)
    tcp = len(LOCAL)
    assert agent.local[tcp].tcp and agent.local[tcp].priority < min(c.priority for c in agent.local[:tcp])
    # a signalled (UDP) candidate is paired with the UDP sockets only
    agent.add_remote_candidates([("127.0.0.1", 5000, 2130706431)])
    assert {local for local, _ in agent.pairs} == set(range(tcp))
    # a UDP source on the TCP candidate, or a connection on a UDP socket: not authenticated, no pair
    check = request(agent, controlling=False, tie_breaker=1)
    assert not agent.handle_request(check, tcp, ("10.0.0.7", 40000)).authenticated
    assert not agent.handle_request(check, 0, TcpPeer("10.0.0.7", 40001)).authenticated
    # a connection's check: a peer-reflexive pair with the TCP candidate, checked back at once
    peer = TcpPeer("10.0.0.7", 40002)
    outcome = agent.handle_request(check, tcp, peer)
    assert outcome.authenticated and (tcp, peer) in agent.pairs
    due = [(local, remote) for local, remote, _ in agent.poll(0.0)]
    assert due[0] == (tcp, peer) and type(due[0][1]) is TcpPeer
    # only the TCP pair works (UDP blocked): it is selected, then nominated
    response, _ = answer(agent.pairs[(tcp, peer)].request, peer)
    agent.handle_response(response, tcp, peer, 0.0)
    assert agent.selected == (tcp, peer)
    for local, remote, datagram in agent.poll(1.0):
        if (local, remote) == (tcp, peer):
            response, sent = answer(datagram, peer)
            if sent.use_candidate:
                agent.handle_response(response, tcp, peer, 1.0)
    assert agent.nominated and agent.selected == (tcp, peer)
