"""ICE-lite responder: authentication, address selection by nomination, consent counting."""

from __future__ import annotations

from aioice import stun

from services.bridge.media import aiortc_adapter as adapter
from services.bridge.media.ice import IceLiteAgent


def request(
    agent: IceLiteAgent,
    *,
    pwd: str | None = None,
    remote: str = "peer",
    use_candidate: bool = False,
    local: str | None = None,
) -> adapter.StunBindingRequest:
    data = adapter.binding_request(
        remote, local or agent.local_ufrag, pwd or agent.local_pwd, use_candidate=use_candidate
    )
    return adapter.parse_binding_request(data)


def test_credentials_are_random_and_long_enough() -> None:
    a, b = IceLiteAgent(), IceLiteAgent()
    assert a.local_ufrag != b.local_ufrag and len(a.local_ufrag) >= 4 and len(a.local_pwd) >= 22


def test_first_valid_check_selects_the_address_and_is_answered() -> None:
    agent = IceLiteAgent()
    outcome = agent.handle(request(agent), ("10.0.0.1", 5000))
    assert outcome.authenticated and outcome.address_selected
    assert agent.selected == ("10.0.0.1", 5000)
    response = stun.parse_message(outcome.response)  # type: ignore[arg-type]
    assert response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("10.0.0.1", 5000)
    assert response.check_message_integrity(agent.local_pwd.encode())


def test_nomination_moves_the_address() -> None:
    agent = IceLiteAgent()
    agent.handle(request(agent), ("10.0.0.1", 5000))
    outcome = agent.handle(request(agent), ("10.0.0.2", 6000))
    assert not outcome.address_selected and agent.selected == ("10.0.0.1", 5000)
    outcome = agent.handle(request(agent, use_candidate=True), ("10.0.0.2", 6000))
    assert outcome.address_selected and agent.selected == ("10.0.0.2", 6000)
    assert agent.checks == 3


def test_wrong_password_or_remote_ufrag_is_unauthorized() -> None:
    agent = IceLiteAgent()
    agent.set_remote("peer", "peerpassword")
    for bad in (request(agent, pwd="x" * 24), request(agent, remote="intruder")):
        outcome = agent.handle(bad, ("10.0.0.1", 5000))
        assert not outcome.authenticated and agent.selected is None
        assert stun.parse_message(outcome.response).error_code == 401  # type: ignore[arg-type]
