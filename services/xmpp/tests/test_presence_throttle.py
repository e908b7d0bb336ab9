"""Presence amplification: one occupant's updates reach the room at a bounded rate, last state wins."""

from services.xmpp.modules.muc import MucService
from services.xmpp.modules.presence_throttle import PresenceThrottle
from services.xmpp.tests.helpers import AUTH, FOCUS, MUC_HOST, login, make_broker

JOIN = "<presence to='room@" + MUC_HOST + "/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
UPDATE = "<presence to='room@" + MUC_HOST + "/{nick}'><status>{n}</status></presence>"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object, list[bool]]] = []

    def __call__(self) -> float:
        return self.now

    def schedule(self, delay: float, fn):  # type: ignore[no-untyped-def]
        cancelled = [False]
        self.timers.append((self.now + delay, fn, cancelled))

        class Handle:
            def cancel(self) -> None:
                cancelled[0] = True

        return Handle()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fn, cancelled in due:
            if not cancelled[0]:
                fn()  # type: ignore[operator]


def test_bucket_allows_a_burst_then_one_per_interval() -> None:
    t = PresenceThrottle(interval=0.5, burst=3)
    assert [t.admit("a", 0.0) for _ in range(3)] == [None, None, None]
    assert t.admit("a", 0.0) == 0.5
    assert t.admit("b", 0.0) is None  # per occupant
    assert t.admit("a", 0.25) == 0.25
    assert t.admit("a", 0.5) is None and t.admit("a", 0.5) == 0.5
    t.forget("a")
    assert len(t) == 1 and t.admit("a", 0.5) is None
    assert PresenceThrottle(interval=0, burst=1).admit("a", 0.0) is None


def room_with_throttle(burst: int = 2):  # type: ignore[no-untyped-def]
    broker, _conf, _brew = make_broker()
    clock = Clock()
    throttled = MucService(
        MUC_HOST,
        broker.send_to,
        broker.route,
        admins=[FOCUS],
        creators=[FOCUS],
        presence_throttle=PresenceThrottle(interval=1.0, burst=burst),
        schedule=clock.schedule,
        clock=clock,
    )
    broker.components[MUC_HOST] = throttled
    focus = login(broker, AUTH, "focus", "focus")
    focus.send(JOIN.format(nick="focus"))
    guests = [login(broker, resource=f"g{i}") for i in range(3)]
    for i, g in enumerate(guests):
        g.send(JOIN.format(nick=f"g{i}"))
    for w in (focus, *guests):
        w.drain()
    return throttled, clock, focus, guests


def statuses(wire, nick: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        p.find("status").text
        for p in wire.drain()
        if p.name == "presence" and p.get("from", "").endswith("/" + nick) and p.find("status") is not None
    ]


def test_a_flood_of_presence_updates_is_coalesced_and_the_last_state_wins() -> None:
    muc, clock, focus, guests = room_with_throttle(burst=2)
    attacker, victim = guests[0], guests[1]
    for n in range(200):
        attacker.send(UPDATE.format(nick="g0", n=n))
    # the burst went out at once; the other 198 wait as one presence
    assert statuses(victim, "g0") == ["0", "1"]
    assert muc.presence_throttle is not None and muc.presence_throttle.coalesced >= 1
    clock.advance(1.0)
    assert statuses(victim, "g0") == ["199"]
    assert statuses(focus, "g0") == ["0", "1", "199"]
    clock.advance(10.0)
    assert statuses(victim, "g0") == []  # nothing more: the coalesced one was the latest


def test_an_honest_client_is_never_delayed_and_joins_and_leaves_are_not_held() -> None:
    muc, clock, _focus, guests = room_with_throttle(burst=2)
    guests[1].send(UPDATE.format(nick="g1", n="muted"))
    clock.advance(5)
    guests[1].send(UPDATE.format(nick="g1", n="unmuted"))
    assert statuses(guests[0], "g1") == ["muted", "unmuted"]
    for n in range(5):
        guests[0].send(UPDATE.format(nick="g0", n=n))
    guests[0].send("<presence to='room@" + MUC_HOST + "/g0' type='unavailable'/>")
    leaves = [p for p in guests[2].drain() if p.get("type") == "unavailable"]
    assert len(leaves) == 1
    clock.advance(10.0)
    assert statuses(guests[2], "g0") == []  # the waiting update died with the occupant
    assert not muc._coalesced and muc.presence_throttle is not None and len(muc.presence_throttle) == 1  # g1 only


def test_the_focus_is_not_throttled() -> None:
    _muc, _clock, focus, guests = room_with_throttle(burst=1)
    for n in range(5):
        focus.send(UPDATE.format(nick="focus", n=n))
    assert statuses(guests[0], "focus") == ["0", "1", "2", "3", "4"]
