"""A full ICE agent for one endpoint (RFC 8445), controlling by default as jitsi-videobridge is.

Sans-I/O: the engine hands it binding requests and responses with the local candidate (socket)
they arrived on and their source address, asks :meth:`IceAgent.poll` for the checks to send
(``(local index, remote address, datagram)``), and reads :attr:`IceAgent.selected`, the pair
media uses.

The agent pairs every local host candidate (one per advertised address, each its own socket)
with every remote UDP candidate it learns: from the endpoint's answer and Jingle ``transport-info``
(:meth:`IceAgent.add_remote_candidates`) and as peer-reflexive candidates from the checks the
endpoint sends (RFC 8445 section 7.3.1.3, which also covers the mDNS names browsers put in their
signalled candidates). Checks are paced and retransmitted; a request from the endpoint triggers
a check of its pair at once (section 7.3.1.4). A pair is valid when our check of it got a signed
success response from the address it was sent to on the socket it left from (section 7.2.5).

Controlling (the default, the role Jicofo gives the bridge), the agent nominates the valid pair
of highest priority once no better pair is still being checked (or half a second after the first
success) with ``USE-CANDIDATE`` (regular nomination, section 8.1.1); until then the first valid
pair carries DTLS. Controlled (the peer insists on controlling and wins the tie-break of section
7.3.1.1, e.g. a peer told the bridge is ICE-lite), it follows the peer: the pair of a
``USE-CANDIDATE`` check, or the first authenticated check until one arrives. In both roles the pair
DTLS arrives on (:meth:`IceAgent.dtls_from`) becomes the media pair: a peer sends DTLS on the pair
it selected.

ICE over TCP (RFC 6544): the bridge's passive TCP candidate is one more local candidate (flagged
``tcp``, ranked below every UDP one). It is never paired with signalled candidates (a passive
candidate cannot connect out; a browser's active ones have no address to reach): each connection a
browser opens is a peer-reflexive remote candidate, a :class:`~.ice_tcp.TcpPeer`, paired with it
when an authenticated check arrives on the connection, and then checked and nominated like any
other pair.
"""

from __future__ import annotations

import ipaddress
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aioice import stun

from . import aiortc_adapter as adapter
from .ice_tcp import TcpPeer

_ALPHABET = string.ascii_letters + string.digits

Address = tuple[str, int]

MAX_REMOTE_CANDIDATES = 16
"""Remote candidates kept per endpoint (signalled and peer-reflexive); more are ignored."""
PACING = 0.02
"""Seconds between two new checks of one endpoint (RFC 8445 section 14.2's Ta)."""
RTO = 0.1
"""First retransmission timeout of a check; doubled on each retransmission."""
MAX_TRANSMISSIONS = 6
"""Transmissions of one check before its pair fails (0.1 + 0.2 + ... + 3.2 s)."""
NOMINATION_WAIT = 0.5
"""Seconds after the first valid pair after which the best valid pair is nominated even while
better pairs are still being checked."""

_HOST_TYPE_PREFERENCE = 126
_PRFLX_TYPE_PREFERENCE = 110
_TCP_HOST_TYPE_PREFERENCE = 90


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def candidate_priority(type_preference: int, local_preference: int = 65535, component: int = 1) -> int:
    """RFC 8445 section 5.1.2.1."""
    return (type_preference << 24) | (local_preference << 8) | (256 - component)


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 section 6.1.2.3: ``controlling``/``controlled`` are the two candidates' priorities."""
    g, d = controlling, controlled
    return (1 << 32) * min(g, d) + 2 * max(g, d) + (1 if g > d else 0)


@dataclass
class StunOutcome:
    """What to do with one binding request: send ``response``; ``address_selected`` is true when
    the request moved the endpoint's media pair."""

    response: bytes | None
    authenticated: bool
    address_selected: bool


@dataclass
class CandidatePair:
    local: int
    remote: Address
    remote_priority: int
    state: str = "frozen"  # frozen (not yet checked), in-progress, succeeded, failed
    transaction: bytes | None = None
    request: bytes = b""
    transmissions: int = 0
    next_at: float = 0.0
    nominating: bool = False
    nominated: bool = False
    triggered: bool = False
    sent_controlling: bool = True  # the role our current check claims
    authenticated: bool = field(default=False)
    """The endpoint sent an authenticated check on this pair (our response proves nothing about
    the path back, but the peer can send on it)."""


# RFC 6544 section 4.2: local preference (2^13 * direction preference + other preference), passive
TCP_LOCAL_PREFERENCE = (6 << 13) | 8191


def tcp_host_priority(index: int = 0) -> int:
    """The priority of the ``index``-th passive TCP host candidate: below every UDP candidate."""
    return candidate_priority(_TCP_HOST_TYPE_PREFERENCE, TCP_LOCAL_PREFERENCE) - index


@dataclass(frozen=True)
class LocalCandidate:
    address: Address
    priority: int
    tcp: bool = False


class IceAgent:
    """ICE for one endpoint: credentials, candidate pairs, checks, nomination and the media pair.

    ``transaction_prefix`` (4 bytes) starts every transaction id this agent sends, so the engine
    routes responses to it without a table.
    """

    def __init__(
        self,
        ufrag: str | None = None,
        pwd: str | None = None,
        *,
        controlling: bool = True,
        tie_breaker: int | None = None,
        transaction_prefix: bytes | None = None,
    ) -> None:
        self.local_ufrag = ufrag or random_token(8)
        self.local_pwd = pwd or random_token(24)
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None
        self.controlling = controlling
        # below 2**63: a peer that must stay controlling (a light test client) can always win
        self.tie_breaker = tie_breaker if tie_breaker is not None else secrets.randbits(63)
        self.transaction_prefix = transaction_prefix or secrets.token_bytes(4)
        self.local: list[LocalCandidate] = []
        self.pairs: dict[tuple[int, Address], CandidatePair] = {}
        self.remote_candidates: dict[Address, int] = {}
        self.selected: tuple[int, Address] | None = None
        self.nominated = False
        self.checks = 0
        self.role_conflicts = 0
        self._first_valid_at: float | None = None
        self._next_check_at = 0.0

    # ---- configuration ----------------------------------------------------------------------

    def set_local_candidates(self, addresses: Sequence[Address], tcp: Sequence[Address] = ()) -> None:
        """The bridge's UDP host candidates, index = the socket they are bound to, then its
        passive ICE-TCP candidates (their indexes follow the UDP ones)."""
        self.local = [
            LocalCandidate(address, candidate_priority(_HOST_TYPE_PREFERENCE, 65535 - i))
            for i, address in enumerate(addresses)
        ] + [LocalCandidate(address, tcp_host_priority(i), tcp=True) for i, address in enumerate(tcp)]

    def set_remote(self, ufrag: str, pwd: str) -> None:
        if (ufrag, pwd) != (self.remote_ufrag, self.remote_pwd) and self.remote_ufrag is not None:
            # an ICE restart: every pair is checked again with the new credentials
            for pair in self.pairs.values():
                pair.state, pair.transaction, pair.transmissions = "frozen", None, 0
                pair.nominating = pair.nominated = False
            self.nominated = False
            self._first_valid_at = None
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd

    def add_remote_candidates(self, candidates: Iterable[tuple[str, int, int]]) -> int:
        """Signalled candidates ``(ip, port, priority)``, UDP component 1 only; hostnames (mDNS)
        and addresses of a family the bridge has no socket for are skipped. Returns how many
        were new."""
        added = 0
        for ip, port, priority in candidates:
            address = _literal(ip, port)
            if address is None or address in self.remote_candidates:
                continue
            if len(self.remote_candidates) >= MAX_REMOTE_CANDIDATES:
                break
            self.remote_candidates[address] = priority
            self._pair_with(address, priority)
            added += 1
        return added

    def _pair_with(self, remote: Address, priority: int) -> None:
        family = ":" in remote[0]
        tcp = type(remote) is TcpPeer
        for index, local in enumerate(self.local):
            if local.tcp != tcp:
                continue
            if (":" in local.address[0]) == family and (index, remote) not in self.pairs:
                self.pairs[(index, remote)] = CandidatePair(index, remote, priority)

    # ---- what the endpoint sends ------------------------------------------------------------

    def handle_request(
        self, request: adapter.StunBindingRequest, local: int, addr: Address, now: float = 0.0
    ) -> StunOutcome:
        """An endpoint's binding request, received on local candidate ``local`` from ``addr``."""
        if 0 <= local < len(self.local) and self.local[local].tcp != (type(addr) is TcpPeer):
            return StunOutcome(None, False, False)  # a UDP source on the TCP candidate, or back
        if request.local_ufrag != self.local_ufrag:
            return StunOutcome(adapter.binding_error(request, 401, "Unauthorized"), False, False)
        if self.remote_ufrag is not None and request.remote_ufrag != self.remote_ufrag:
            return StunOutcome(adapter.binding_error(request, 401, "Unauthorized"), False, False)
        if not adapter.verify_integrity(request, self.local_pwd):
            return StunOutcome(adapter.binding_error(request, 401, "Unauthorized"), False, False)
        attributes = request.message.attributes
        theirs = attributes.get("ICE-CONTROLLING" if self.controlling else "ICE-CONTROLLED")
        if isinstance(theirs, int):  # both claim the same role (RFC 8445 section 7.3.1.1)
            self.role_conflicts += 1
            if (self.tie_breaker >= theirs) == self.controlling:
                response = adapter.binding_error(request, 487, "Role Conflict", self.local_pwd)
                return StunOutcome(response, True, False)
            self._switch_role()
        self.checks += 1
        pair = self.pairs.get((local, addr))
        if pair is None and 0 <= local < len(self.local):
            # a peer-reflexive candidate, paired with the local candidate the check reached
            # (RFC 8445 sections 7.3.1.3 and 7.3.1.4)
            if addr not in self.remote_candidates and len(self.remote_candidates) < MAX_REMOTE_CANDIDATES:
                self.remote_candidates[addr] = request.priority or candidate_priority(_PRFLX_TYPE_PREFERENCE)
            if addr in self.remote_candidates:
                pair = self.pairs[(local, addr)] = CandidatePair(local, addr, self.remote_candidates[addr])
        moved = False
        if pair is not None:
            pair.authenticated = True
            if pair.state != "succeeded" and pair.state != "in-progress" and self.remote_pwd is not None:
                pair.state, pair.triggered, pair.transmissions = "frozen", True, 0  # a triggered check
        if not self.controlling:
            key = (local, addr)
            if request.use_candidate and (not self.nominated or self.selected != key):
                self.nominated = True
                moved = self.selected != key
                self.selected = key
                if pair is not None:
                    pair.nominated = True
            elif self.selected is None:
                self.selected = key
                moved = True
        response = adapter.binding_success(request, addr, self.local_pwd)
        return StunOutcome(response, True, moved)

    def handle_response(self, datagram: bytes, local: int, addr: Address, now: float) -> bool:
        """A binding response to one of our checks; True when it moved the media pair."""
        try:
            message = stun.parse_message(datagram)
        except ValueError:
            return False
        pair = next((p for p in self.pairs.values() if p.transaction == message.transaction_id), None)
        if pair is None or message.message_method != stun.Method.BINDING or self.remote_pwd is None:
            return False
        if not message.check_message_integrity(self.remote_pwd.encode()):
            return False  # not from the endpoint (or a forged answer): the check stays pending
        if (pair.local, pair.remote) != (local, addr):
            # RFC 8445 section 7.2.5.2.1: the response must come back the way the check went
            pair.state, pair.transaction = "failed", None
            return False
        pair.transaction = None
        if message.message_class == stun.Class.ERROR:
            code = message.attributes.get("ERROR-CODE", (0, ""))[0]
            if code == 487:  # role conflict: take the other role (unless taken since) and check again
                if self.controlling == pair.sent_controlling:
                    self._switch_role()
                pair.state, pair.transmissions, pair.triggered = "frozen", 0, True
            else:
                pair.state = "failed"
            return False
        if message.message_class != stun.Class.RESPONSE:
            return False
        pair.state = "succeeded"
        if self._first_valid_at is None:
            self._first_valid_at = now
        moved = False
        if pair.nominating:
            pair.nominating, pair.nominated = False, True
            if self.controlling:
                self.nominated = True
                moved = self.selected != (pair.local, pair.remote)
                self.selected = (pair.local, pair.remote)
        if self.selected is None and self.controlling:
            self.selected = (pair.local, pair.remote)
            moved = True
        return moved

    def dtls_from(self, local: int, addr: Address) -> bool:
        """DTLS arrived on this pair: it becomes the media pair when the endpoint proved it owns
        the address (an authenticated check from it or a valid check to it). True when it moved."""
        key = (local, addr)
        pair = self.pairs.get(key)
        if self.selected == key or pair is None or not (pair.authenticated or pair.state == "succeeded"):
            return False
        self.selected = key
        return True

    def owns(self, local: int, addr: Address) -> bool:
        """Whether the endpoint proved it sends from ``addr`` to local candidate ``local``."""
        pair = self.pairs.get((local, addr))
        return pair is not None and (pair.authenticated or pair.state == "succeeded")

    # ---- what the agent sends ---------------------------------------------------------------

    def poll(self, now: float) -> list[tuple[int, Address, bytes]]:
        """Checks due at ``now``: retransmissions, triggered checks, one new ordinary check (paced)
        and the nomination when it is time."""
        if self.remote_pwd is None or self.remote_ufrag is None:
            return []
        out: list[tuple[int, Address, bytes]] = []
        for pair in self.pairs.values():
            if pair.state == "in-progress" and pair.next_at <= now:
                if pair.transmissions >= MAX_TRANSMISSIONS:
                    pair.state, pair.transaction = "failed", None
                    if pair.nominating:
                        pair.nominating = False
                    continue
                out.append(self._transmit(pair, now))
            elif pair.state == "frozen" and pair.triggered:
                pair.triggered = False
                out.append(self._start(pair, now, use_candidate=pair.nominated and self.controlling))
        if self.controlling and not self.nominated and not any(p.nominating for p in self.pairs.values()):
            best = self._nomination_candidate(now)
            if best is not None:
                best.nominating = True
                out.append(self._start(best, now, use_candidate=True))
        if now >= self._next_check_at:
            waiting = [p for p in self.pairs.values() if p.state == "frozen" and not p.triggered]
            if waiting:
                pair = max(waiting, key=self._priority)
                out.append(self._start(pair, now, use_candidate=False))
                self._next_check_at = now + PACING
        return out

    def next_time(self, now: float) -> float | None:
        """When :meth:`poll` has something to do next (``None``: nothing until a datagram)."""
        if self.remote_pwd is None:
            return None
        times = [p.next_at for p in self.pairs.values() if p.state == "in-progress"]
        if any(p.state == "frozen" for p in self.pairs.values()):
            times.append(max(now, self._next_check_at) if not any(p.triggered for p in self.pairs.values()) else now)
        if self.controlling and not self.nominated and self._first_valid_at is not None:
            times.append(self._first_valid_at + NOMINATION_WAIT)
        return min(times) if times else None

    def _nomination_candidate(self, now: float) -> CandidatePair | None:
        valid = [p for p in self.pairs.values() if p.state == "succeeded"]
        if not valid:
            return None
        best = max(valid, key=self._priority)
        pending = [p for p in self.pairs.values() if p.state in ("frozen", "in-progress")]
        better_pending = any(self._priority(p) > self._priority(best) for p in pending)
        waited = self._first_valid_at is not None and now >= self._first_valid_at + NOMINATION_WAIT
        return best if not better_pending or waited else None

    def _priority(self, pair: CandidatePair) -> int:
        local = self.local[pair.local].priority if pair.local < len(self.local) else 0
        if self.controlling:
            return pair_priority(local, pair.remote_priority)
        return pair_priority(pair.remote_priority, local)

    def _start(self, pair: CandidatePair, now: float, *, use_candidate: bool) -> tuple[int, Address, bytes]:
        assert self.remote_ufrag is not None and self.remote_pwd is not None
        pair.transaction = self.transaction_prefix + secrets.token_bytes(8)
        pair.sent_controlling = self.controlling
        pair.request = adapter.binding_request(
            self.local_ufrag,
            self.remote_ufrag,
            self.remote_pwd,
            use_candidate=use_candidate,
            priority=candidate_priority(_PRFLX_TYPE_PREFERENCE, 65535 - pair.local),
            tie_breaker=self.tie_breaker,
            controlling=self.controlling,
            transaction_id=pair.transaction,
        )
        pair.state, pair.transmissions = "in-progress", 0
        return self._transmit(pair, now)

    def _transmit(self, pair: CandidatePair, now: float) -> tuple[int, Address, bytes]:
        pair.next_at = now + RTO * (1 << pair.transmissions)
        pair.transmissions += 1
        return pair.local, pair.remote, pair.request

    def _switch_role(self) -> None:
        self.controlling = not self.controlling
        for pair in self.pairs.values():
            pair.nominating = False


def _literal(ip: str, port: int) -> Address | None:
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return None  # an mDNS hostname: learnt as peer-reflexive from the endpoint's checks
    if not 0 < port < 65536:
        return None
    return (str(parsed), port)
