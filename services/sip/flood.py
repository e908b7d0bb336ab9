"""SIP messages per source address, without I/O (Kamailio's and OpenSIPS's ``pike`` module).

Every message a source sends costs the gateway parsing, most a transaction, INVITE and REGISTER
digest work; one source sending as fast as it can crowds out every other caller. Each source
address has a token bucket (``services/common/token_bucket.py``): ``burst`` messages at once, then
``rate`` a second. A message over it is refused and costs nothing more: the adapter drops it
silently over UDP (never an answer to a flood, which could be spoofed: no amplification) and
closes a TCP or WebSocket connection. A refusal does not spend tokens, so a source that keeps
flooding still gets ``rate`` messages a second through, as pike lets a source through again once
its density falls.

Sources in ``exempt`` networks (the host itself by default, where the launcher runs everything)
are never counted, like the broker's ``connection-exempt-networks``. A WebSocket from a trusted
proxy (nginx) counts as the client address the proxy forwards
(:func:`services.common.addresses.forwarded_client`), so nginx itself is never the source.

The table is bounded: at most ``max_sources`` addresses, the least recently seen forgotten first
(a source flooding now is always recent), so spoofed sources cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from services.common import addresses
from services.common.token_bucket import TokenBucket


class SourceLimiter:
    def __init__(self, rate: float, burst: float, exempt: Sequence[str] = (), max_sources: int = 16384) -> None:
        """``rate`` 0 turns the limit off."""
        self.rate = rate
        self.burst = max(1.0, float(burst))
        self.exempt = addresses.parse_networks(tuple(exempt))
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._keys: dict[str, str | None] = {}  # address as given -> its bucket's key, None: exempt
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def key(self, source: str) -> str | None:
        """The bucket of ``source`` (an IPv4-mapped address is its IPv4 address), None if exempt.
        Remembered: the same few addresses send most messages."""
        try:
            return self._keys[source]
        except KeyError:
            pass
        if len(self._keys) >= self.max_sources:
            self._keys.clear()
        ip = addresses.parse_address(source)
        key = None if ip is not None and addresses.in_networks(ip, self.exempt) else str(ip or source)
        self._keys[source] = key
        return key

    def admit(self, source: str, now: float) -> bool:
        """Whether one more message from ``source`` (an IP address) may be handled now."""
        if self.rate <= 0:
            return True
        key = self.key(source)
        if key is None:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        if bucket.take(now):
            return True
        self.refused += 1
        return False

    def sweep(self, now: float) -> None:
        """Forget the sources whose bucket is full again (they are as good as new)."""
        for source in [s for s, b in self._buckets.items() if b.full(now)]:
            del self._buckets[source]

    def __len__(self) -> int:
        return len(self._buckets)
