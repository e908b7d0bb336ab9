import ipaddress

from services.common.addresses import forwarded_client, in_networks, parse_address, parse_networks

LOOPBACK = parse_networks(("127.0.0.0/8", "::1/128", "not a network"))


def test_addresses_parse_with_brackets_and_ipv4_mapped_ones_are_ipv4() -> None:
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_address("::ffff:10.1.2.3") == ipaddress.ip_address("10.1.2.3")
    assert parse_address(" 192.0.2.7 ") == ipaddress.ip_address("192.0.2.7")
    assert parse_address("junk") is None and parse_address("") is None


def test_network_membership() -> None:
    assert len(LOOPBACK) == 2  # the bad entry is skipped
    assert in_networks("127.0.0.5", LOOPBACK) and in_networks("::ffff:127.0.0.1", LOOPBACK)
    assert in_networks(ipaddress.ip_address("::1"), LOOPBACK)
    assert not in_networks("10.0.0.1", LOOPBACK) and not in_networks("junk", parse_networks(("0.0.0.0/0",)))


def test_the_forwarded_address_counts_only_from_a_trusted_proxy() -> None:
    assert forwarded_client("127.0.0.1", "203.0.113.9", LOOPBACK) == "203.0.113.9"
    # the right-most entry is the proxy's; what the client put to its left is ignored
    assert forwarded_client("127.0.0.1", "198.51.100.1, 203.0.113.9", LOOPBACK) == "203.0.113.9"
    assert forwarded_client("::ffff:127.0.0.1", "::ffff:203.0.113.9", LOOPBACK) == "203.0.113.9"
    # not from a trusted proxy, no header, or a header that is not an address: the peer
    assert forwarded_client("192.0.2.1", "203.0.113.9", LOOPBACK) == "192.0.2.1"
    assert forwarded_client("127.0.0.1", None, LOOPBACK) == "127.0.0.1"
    assert forwarded_client("127.0.0.1", "203.0.113.9, evil", LOOPBACK) == "127.0.0.1"
