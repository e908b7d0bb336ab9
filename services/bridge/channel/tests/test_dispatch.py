"""The transport-independent bridge-channel core: routing whatever carried a message, and the
choice of transport for a message to an endpoint."""

from __future__ import annotations

import json
from typing import Any

from services.bridge.channel.dispatch import BridgeChannels
from services.common import bridge_channel as bc


class Outbox:
    """A transport that keeps what it sends; ``open`` lists the endpoints it can reach."""

    def __init__(self, name: str, *open_to: str) -> None:
        self.name = name
        self.open = set(open_to)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_text(self, conference_id: str, endpoint_id: str, text: str) -> bool:
        if endpoint_id not in self.open:
            return False
        self.sent.append((endpoint_id, json.loads(text)))
        return True


def channels(*transports: Outbox) -> tuple[BridgeChannels, list[tuple[str, str, dict[str, Any]]]]:
    engine: list[tuple[str, str, bc.BridgeChannelMessage]] = []
    hub = BridgeChannels(
        endpoints_of=lambda cid: ["a", "b", "c"] if cid == "conf" else [],
        to_engine=lambda c, e, m: engine.append((c, e, m)),
        version="9.9",
    )
    for t in transports:
        hub.add_transport(t)
    return hub, engine


def test_a_relayed_message_reaches_each_receiver_over_its_own_transport() -> None:
    ws, dc = Outbox("websocket", "c"), Outbox("datachannel", "a", "b")
    hub, _ = channels(ws, dc)
    hub.receive("conf", "c", '{"colibriClass":"EndpointMessage","to":"","msgPayload":{"x":1}}', "websocket")
    assert sorted(to for to, _ in dc.sent) == ["a", "b"] and ws.sent == []
    assert all(m == {"colibriClass": "EndpointMessage", "to": "", "msgPayload": {"x": 1}, "from": "c"}
               for _, m in dc.sent)  # fmt: skip
    hub.receive("conf", "a", b'{"colibriClass":"EndpointMessage","to":"c","msgPayload":2}', "datachannel")
    assert ws.sent == [("c", {"colibriClass": "EndpointMessage", "to": "c", "msgPayload": 2, "from": "a"})]


def test_media_control_goes_to_the_engine_and_hello_is_answered_on_the_same_channel() -> None:
    ws, dc = Outbox("websocket", "a"), Outbox("datachannel", "a")
    hub, engine = channels(ws, dc)
    hub.receive("conf", "a", '{"colibriClass":"ReceiverVideoConstraints","lastN":1}', "datachannel")
    assert engine == [("conf", "a", bc.ReceiverVideoConstraints(last_n=1))]
    hub.receive("conf", "a", '{"colibriClass":"ClientHello"}', "datachannel")
    assert dc.sent == [("a", {"colibriClass": "ServerHello", "version": "9.9"})] and ws.sent == []
    hub.receive("conf", "a", "not json", "datachannel")  # dropped, nothing breaks
    hub.receive("conf", "a", '{"colibriClass":"ClientHello"}', "websocket")
    assert ws.sent == [("a", {"colibriClass": "ServerHello", "version": "9.9"})]


def test_the_transport_used_last_is_preferred_and_an_open_one_is_the_fallback() -> None:
    ws, dc = Outbox("websocket", "a"), Outbox("datachannel", "a")
    hub, _ = channels(ws, dc)
    assert hub.transport_of("conf", "a") is None
    assert hub.send("conf", "a", bc.ForwardedSources(forwarded_sources=["b-v0"]))  # any open one
    hub.opened("conf", "a", "datachannel", take_over=False)  # nothing used yet: taken
    assert hub.transport_of("conf", "a") == "datachannel"
    hub.send("conf", "a", bc.DominantSpeakerEndpointChangeEvent(dominant_speaker_endpoint="b"))
    assert dc.sent[-1][1]["colibriClass"] == "DominantSpeakerEndpointChangeEvent"
    hub.opened("conf", "a", "websocket")
    hub.send("conf", "a", bc.ForwardedSources(forwarded_sources=[]))
    assert ws.sent[-1] == ("a", {"colibriClass": "ForwardedSources", "forwardedSources": []})
    ws.open.clear()  # the socket went away: the data channel carries on
    assert hub.send("conf", "a", bc.ForwardedSources(forwarded_sources=["c-v0"]))
    assert dc.sent[-1] == ("a", {"colibriClass": "ForwardedSources", "forwardedSources": ["c-v0"]})
    dc.open.clear()
    assert not hub.send("conf", "a", bc.ForwardedSources(forwarded_sources=[]))
    hub.forget("conf", "a")
    assert hub.transport_of("conf", "a") is None


def test_a_data_channel_opening_beside_a_web_socket_does_not_take_over_until_used() -> None:
    ws, dc = Outbox("websocket", "a"), Outbox("datachannel", "a")
    hub, _ = channels(ws, dc)
    hub.opened("conf", "a", "websocket")
    hub.opened("conf", "a", "datachannel", take_over=False)
    hub.send("conf", "a", bc.ForwardedSources(forwarded_sources=[]))
    assert len(ws.sent) == 1 and dc.sent == []
    hub.receive("conf", "a", '{"colibriClass":"EndpointStats"}', "datachannel")  # it sends on it
    hub.send("conf", "a", bc.ForwardedSources(forwarded_sources=[]))
    assert len(dc.sent) == 1
    hub.opened("conf", "a", "websocket")  # a (re)connected socket takes over again
    hub.send("conf", "a", bc.ForwardedSources(forwarded_sources=[]))
    assert len(ws.sent) == 2


def test_each_channel_open_is_reported_once_and_a_failing_hook_keeps_the_channel() -> None:
    ws = Outbox("websocket", "a")
    opened: list[tuple[str, str]] = []
    hub = BridgeChannels(
        endpoints_of=lambda cid: ["a"], to_engine=lambda c, e, m: None, version="9.9",
        on_open=lambda c, e: opened.append((c, e)),
    )  # fmt: skip
    hub.add_transport(ws)
    hub.opened("conf", "a", "websocket")
    hub.opened("conf", "a", "datachannel", take_over=False)
    assert opened == [("conf", "a"), ("conf", "a")]
    assert hub.transport_of("conf", "a") == "websocket"

    def broken(c: str, e: str) -> None:
        raise RuntimeError("bug")

    hub.on_open = broken
    hub.opened("conf", "a", "websocket")  # logged, not raised
    assert hub.send("conf", "a", bc.ServerHello(version="9.9"))


def test_relayed_messages_are_bounded_per_endpoint_and_the_sender_told() -> None:
    now = [0.0]
    dc = Outbox("datachannel", "a", "b", "c")
    hub = BridgeChannels(endpoints_of=lambda cid: ["a", "b", "c"], to_engine=lambda c, e, m: None, version="1",
                         clock=lambda: now[0], relay_bytes_per_second=1000, relay_burst_bytes=4000)  # fmt: skip
    hub.add_transport(dc)
    big = json.dumps({"colibriClass": "EndpointMessage", "to": "", "msgPayload": {"t": "x" * 900}})
    for _ in range(10):  # ~9.5 KB at once: the first four go out, the rest are dropped
        hub.receive("conf", "a", big, "datachannel")
    to_b = [m for to, m in dc.sent if to == "b"]
    assert len(to_b) == 4 and hub.relay_dropped == 6
    errors = [m for to, m in dc.sent if to == "a" and m["colibriClass"] == "Error"]
    assert len(errors) == 1 and "rate" in errors[0]["reason"]  # one Error a second at most
    hub.receive("conf", "b", big, "datachannel")  # another endpoint has its own budget
    assert len([m for to, m in dc.sent if to == "c"]) == 5
    # a ClientHello or media control is not relayed and costs nothing
    hub.receive("conf", "a", '{"colibriClass":"ClientHello"}', "datachannel")
    assert dc.sent[-1] == ("a", {"colibriClass": "ServerHello", "version": "1"})
    now[0] = 1.0  # a second later, one more message's worth
    hub.receive("conf", "a", big, "datachannel")
    assert len([m for to, m in dc.sent if to == "b" and m.get("from") == "a"]) == 5
    hub.forget("conf", "a")
    assert ("conf", "a") not in hub._relay_budget
