import socket

import pytest

from services.common.ports import PortRange, PortRequest, claim_slot


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10000", (10000, 10000)), (9090, (9090, 9090)), ("10000-10019", (10000, 10019)), (" 80 ", (80, 80))],
)
def test_parse(text: str | int, expected: tuple[int, int]) -> None:
    r = PortRange.parse(text)
    assert (r.first, r.last) == expected


@pytest.mark.parametrize("text", ["", "abc", "10-", "20-10", "0", "70000", "1-2-3"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        PortRange.parse(text)


def _free_block(n: int) -> int:
    """A base port with n consecutive TCP and UDP ports free on loopback."""
    for base in range(42000, 60000, 97):
        try:
            _, socks = claim_slot([PortRequest("127.0.0.1", PortRange(base, base + n - 1))])
        except OSError:
            continue
        for s in socks:
            s.close()
        ok = True
        for port in range(base, base + n):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        ok = False
        if ok:
            return base
    raise RuntimeError("no free block")


def test_replicas_take_successive_slots_and_a_taken_port_skips_a_slot() -> None:
    base = _free_block(4)
    ranges = [
        PortRequest("127.0.0.1", PortRange(base, base + 3), socket.SOCK_DGRAM),
        PortRequest("127.0.0.1", PortRange(base, base + 3)),
    ]
    held = []
    try:
        slot0, socks0 = claim_slot(ranges)
        held += socks0
        assert slot0 == 0
        assert socks0[0].getsockname()[1] == base and socks0[0].type == socket.SOCK_DGRAM
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", base + 1))  # TCP port of slot 1 taken by someone else
        held.append(blocker)
        slot, socks = claim_slot(ranges)
        held += socks
        assert slot == 2
        assert {s.getsockname()[1] for s in socks} == {base + 2}
    finally:
        for s in held:
            s.close()


def test_no_free_slot_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(OSError, match=f"no free port slot in TCP 127.0.0.1:{port}"):
            claim_slot([PortRequest("127.0.0.1", PortRange(port, port))])
