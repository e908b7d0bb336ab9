"""The gateway's SIP core: transactions (RFC 3261 §17.2, §17.1.2), registrar (§10, RFC 5626 flows,
RFC 7118 §5), dialogs as a UAS (§12, §13.3, §15) and digest auth (``digest.py``). No I/O.

The transports hand it whole messages together with the :class:`Flow` they arrived on and read
what it wants done from :attr:`SipCore.outbox` (:class:`Send`, :class:`Close`); the media side
reads :attr:`SipCore.events` (:class:`CallOffered`, :class:`CallReoffered`, :class:`CallEnded`...)
and answers with :meth:`SipCore.answer`, :meth:`SipCore.reject` and :meth:`SipCore.hangup`. Time is
passed in (``now``, monotonic seconds); :meth:`SipCore.tick` runs retransmissions and expiries, and
:meth:`SipCore.next_deadline` says when it is next needed.

Routing back: every response goes back on the flow its request came on (for UDP the source
address and port, whatever Via says — symmetric response routing, RFC 3581 §4); a dialog keeps
the flow its INVITE arrived on, so the gateway's BYE or re-INVITE answers reach a WebSocket client
whose Contact is an unroutable ``*.invalid`` host (RFC 7118 §5) over that same connection. A
registration keeps its flow too, and an RFC 5626 registration (``+sip.instance`` and ``reg-id``)
replaced over a new connection moves its flow to it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from . import dtmf
from .digest import DigestAuth
from .message import (
    NameAddr,
    SipMessage,
    SipParseError,
    SipUri,
    Via,
    new_branch,
    new_tag,
    response_to,
)

log = logging.getLogger("sip.core")

T1 = 0.5  # RFC 3261 §17.1.1.1
T2 = 4.0
T4 = 5.0
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO"
ROOM_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

TransportName = Literal["udp", "tcp", "ws", "wss"]


@dataclass(frozen=True)
class Flow:
    """Where a message came from: a UDP source address, or one stream connection (RFC 5626 §3)."""

    transport: TransportName
    host: str
    port: int
    conn: int = 0  # connection id for streams, 0 for UDP

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def token(self) -> str:
        return f"{self.transport}-{self.conn}" if self.conn else f"udp-{self.host}-{self.port}"


@dataclass(frozen=True)
class Send:
    flow: Flow
    data: bytes


@dataclass(frozen=True)
class Close:
    flow: Flow
    reason: str


@dataclass
class Binding:
    aor: str
    contact: str
    expires_at: float
    flow: Flow
    instance: str | None = None
    reg_id: str | None = None
    call_id: str = ""
    cseq: int = 0


@dataclass
class Call:
    """A dialog in which the gateway is the UAS (an INVITE into a room)."""

    key: str  # Call-ID + remote tag
    call_id: str
    room: str
    display_name: str
    remote_uri: str  # the caller's From
    local_uri: str  # the To of the INVITE
    remote_tag: str
    local_tag: str
    remote_target: str
    route_set: list[str]
    flow: Flow
    offer: bytes
    invite: SipMessage
    remote_cseq: int
    local_cseq: int = 0
    state: Literal["offered", "answered", "confirmed", "ended"] = "offered"
    answer_sdp: bytes = b""
    authenticated_user: str = ""
    # 2xx retransmission until ACK (§13.3.1.4)
    ok_bytes: bytes = b""
    ok_interval: float = T1
    ok_next: float = 0.0
    ok_give_up: float = 0.0
    reinvite: SipMessage | None = None
    created: float = 0.0
    dtmf_rate: dtmf.DigitRate = field(default_factory=dtmf.DigitRate)  # INFO digits (RFC 6086)


@dataclass(frozen=True)
class CallOffered:
    call: Call


@dataclass(frozen=True)
class CallConfirmed:
    call: Call


@dataclass(frozen=True)
class CallReoffered:
    call: Call
    sdp: bytes


@dataclass(frozen=True)
class CallDigit:
    """A DTMF digit the caller sent as SIP INFO (RFC 6086)."""

    call: Call
    digit: str


@dataclass(frozen=True)
class CallEnded:
    call: Call
    reason: str


@dataclass(frozen=True)
class Registered:
    binding: Binding
    removed: bool


Event = CallOffered | CallConfirmed | CallReoffered | CallDigit | CallEnded | Registered


@dataclass
class _ServerTxn:
    key: tuple[str, str, str]
    request: SipMessage
    flow: Flow
    invite: bool
    response: bytes = b""
    final: int = 0
    expires_at: float = 0.0
    # non-2xx INVITE retransmission (timer G) until ACK (timer H)
    retransmit_at: float | None = None
    interval: float = T1
    give_up_at: float = 0.0
    call_key: str | None = None


@dataclass
class _ClientTxn:
    branch: str
    data: bytes
    flow: Flow
    method: str
    call_key: str | None
    next_at: float | None
    interval: float
    give_up_at: float


@dataclass
class CoreSettings:
    domains: tuple[str, ...] = ("meet.jitsi",)
    realm: str = "meet.jitsi"
    host: str = "127.0.0.1"  # how the gateway names itself in Via / Contact
    user_agent: str = "Parley SIP gateway"
    register_auth: bool = True
    invite_auth: bool = False
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    max_calls: int = 200
    max_transactions: int = 8192
    max_bindings: int = 10000
    max_contacts_per_aor: int = 10
    max_auth_failures: int = 20  # per source address per minute, then 403 without a challenge
    # the listening port of each transport ("udp", "tcp", "ws"), in Contact and Via when known: a
    # UAC sends its ACK and in-dialog requests to the Contact (RFC 3261 §12.1.1)
    ports: dict[str, int] = field(default_factory=dict)
    offer_timeout: float = 60.0  # an INVITE the media side has not answered by then gets 480


class SipCore:
    def __init__(self, settings: CoreSettings, auth: DigestAuth) -> None:
        self.settings = settings
        self.auth = auth
        self.outbox: list[Send | Close] = []
        self.events: list[Event] = []
        self.calls: dict[str, Call] = {}
        self.bindings: dict[str, list[Binding]] = {}
        self._server: OrderedDict[tuple[str, str, str], _ServerTxn] = OrderedDict()
        self._client: dict[str, _ClientTxn] = {}
        self._timers: list[tuple[float, int]] = []
        self._seq = itertools.count()
        self._auth_failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self.counters: dict[str, int] = {}

    # ------------------------------------------------------------------ plumbing

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _send(self, flow: Flow, msg: SipMessage) -> bytes:
        data = msg.to_bytes()
        self.outbox.append(Send(flow, data))
        return data

    def _arm(self, when: float) -> None:
        heapq.heappush(self._timers, (when, next(self._seq)))

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def _respond(self, txn: _ServerTxn | None, flow: Flow, request: SipMessage, status: int,
                 reason: str = "", *, to_tag: str | None = None, extra: list[tuple[str, str]] | None = None,
                 body: bytes = b"", now: float = 0.0) -> bytes:
        extra = list(extra or [])
        if status != 100:
            extra.append(("Server", self.settings.user_agent))
        if body:
            extra.append(("Content-Type", "application/sdp"))
        if to_tag is None and status > 100:
            to_tag = self._stateless_tag(request)
        resp = response_to(request, status, reason, to_tag=to_tag, extra=extra, body=body)
        self._stamp_via(resp, flow)
        data = self._send(flow, resp)
        if txn is not None and status >= txn.final:
            txn.response = data
            if status >= 200:
                txn.final = status
                txn.expires_at = now + (64 * T1 if not flow.reliable or txn.invite else 0.5)
                self._arm(txn.expires_at)
        return data

    def _evict_completed(self) -> bool:
        """The table is full: forget its oldest completed transaction that waits for nothing
        (a final response sent, no retransmission running: kept only to answer a retransmitted
        request, RFC 3261 section 17.2.2 timer J), so a flood of requests answered at once (from
        any number of spoofed sources) cannot fill the table and shut out other callers for
        64*T1. A retransmission of the forgotten request is then handled as a new one, which
        every method the gateway answers at once tolerates. False when every one is in progress
        (INVITEs waiting for the meeting, bounded by ``max_calls``; final non-2xx responses being
        retransmitted until their ACK)."""
        for key, txn in self._server.items():
            if txn.final and txn.retransmit_at is None and txn.call_key is None:
                del self._server[key]
                self._count("transactions_evicted")
                return True
        return False

    @staticmethod
    def _stateless_tag(request: SipMessage) -> str:
        # the same To tag for retransmissions of one request (RFC 3261 §8.2.6.2)
        via = request.get("Via") or ""
        return format(abs(hash((request.call_id, via))) % (1 << 48), "x")

    @staticmethod
    def _stamp_via(resp: SipMessage, flow: Flow) -> None:
        """Add received/rport to the top Via of a response (RFC 3261 §18.2.1, RFC 3581 §4)."""
        for i, (key, value) in enumerate(resp.headers):
            if key != "Via":
                continue
            first, sep, rest = value.partition(",")
            try:
                via = Via.parse(first)
            except ValueError:
                return
            if "rport" in via.params:
                via.params["rport"] = str(flow.port)
            if via.host != flow.host:
                via.params["received"] = flow.host
            resp.headers[i] = (key, str(via) + (sep + rest if sep else ""))
            return

    # ------------------------------------------------------------------ input

    def receive_error(self, flow: Flow, error: SipParseError, now: float) -> None:
        """A message that did not parse: a 400 to a request whose start line was read, nothing to
        anything else; a fatal error on a stream closes it."""
        self._count("malformed")
        partial = error.partial
        if partial is not None and partial.method and partial.method != "ACK":
            resp = response_to(partial, 400, f"Bad Request ({error.reason})",
                               to_tag=self._stateless_tag(partial))
            self._send(flow, resp)
        if error.fatal and flow.reliable:
            self.outbox.append(Close(flow, error.reason))

    def receive(self, flow: Flow, msg: SipMessage, now: float) -> None:
        if msg.is_request:
            self._count(f"request_{msg.method}")
            self._request(flow, msg, now)
        else:
            self._response(flow, msg, now)

    def _request(self, flow: Flow, req: SipMessage, now: float) -> None:
        via = req.top_via
        method = req.method or ""
        branch = via.branch or ""
        match_method = "INVITE" if method == "ACK" else method
        key = (branch, f"{via.host}:{via.port}", match_method)
        txn = self._server.get(key)
        if method == "ACK":
            self._ack(flow, req, txn, now)
            return
        if txn is not None and method != "CANCEL":
            if txn.response:  # a retransmission: the last response again (§17.2.1, §17.2.2)
                self.outbox.append(Send(flow, txn.response))
            return
        if method == "CANCEL":
            self._cancel(flow, req, now)
            return
        if len(self._server) >= self.settings.max_transactions and not self._evict_completed():
            self._count("overload")
            self._respond(None, flow, req, 503, extra=[("Retry-After", "5")])
            return
        txn = _ServerTxn(key, req, flow, invite=method == "INVITE")
        self._server[key] = txn
        mf = req.get("Max-Forwards")
        if mf is not None and int(mf) == 0 and method != "OPTIONS":
            self._respond(txn, flow, req, 483, now=now)
            return
        if req.get("Require") and method not in ("CANCEL",):
            self._respond(txn, flow, req, 420, extra=[("Unsupported", req.get("Require") or "")], now=now)
            return
        try:
            uri = SipUri.parse(req.uri)
        except ValueError:
            self._respond(txn, flow, req, 416, now=now)
            return
        if method == "REGISTER":
            self._register(txn, flow, req, uri, now)
        elif method == "OPTIONS":
            self._respond(txn, flow, req, 200, now=now, extra=[
                ("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "outbound, path")])
        elif method == "INVITE":
            self._invite(txn, flow, req, uri, now)
        elif method == "BYE":
            self._bye(txn, flow, req, now)
        elif method == "INFO":
            self._info(txn, flow, req, now)
        else:
            self._respond(txn, flow, req, 405, extra=[("Allow", ALLOW)], now=now)

    def _response(self, flow: Flow, resp: SipMessage, now: float) -> None:
        branch = resp.top_via.branch or ""
        txn = self._client.get(branch)
        if txn is None or resp.status < 200:
            return
        del self._client[branch]
        if txn.method == "BYE" and txn.call_key:
            self.calls.pop(txn.call_key, None)

    # ------------------------------------------------------------------ auth

    def _authorize(self, txn: _ServerTxn, flow: Flow, req: SipMessage, now: float) -> str | None:
        """The authenticated username, or None after answering 401/403."""
        source = flow.host
        since, failures = self._auth_failures.get(source, (now, 0))
        if now - since > 60:
            since, failures = now, 0
        if failures >= self.settings.max_auth_failures:
            self._count("auth_blocked")
            self._respond(txn, flow, req, 403, "Too many failed authentications", now=now)
            return None
        verdict = self.auth.check(req.get("Authorization"), req.method or "")
        if verdict.ok:
            return verdict.username
        if req.get("Authorization") and not verdict.stale:
            self._auth_failures[source] = (since, failures + 1)
            self._auth_failures.move_to_end(source)
            while len(self._auth_failures) > 4096:
                self._auth_failures.popitem(last=False)
            self._count("auth_failed")
        extra = [("WWW-Authenticate", c) for c in self.auth.challenges(stale=verdict.stale)]
        self._respond(txn, flow, req, 401, extra=extra, now=now)
        return None

    # ------------------------------------------------------------------ registrar

    def _register(self, txn: _ServerTxn, flow: Flow, req: SipMessage, uri: SipUri, now: float) -> None:
        if uri.host.lower() not in self.settings.domains:
            self._respond(txn, flow, req, 404, "Not a domain of this registrar", now=now)
            return
        try:
            to = NameAddr.parse(req.get("To") or "")
            aor_uri = SipUri.parse(to.uri)
        except ValueError:
            self._respond(txn, flow, req, 400, "Bad To", now=now)
            return
        aor = f"sip:{aor_uri.user}@{aor_uri.host.lower()}"
        if not aor_uri.user or aor_uri.host.lower() not in self.settings.domains:
            self._respond(txn, flow, req, 404, now=now)
            return
        if self.settings.register_auth:
            user = self._authorize(txn, flow, req, now)
            if user is None:
                return
            if user != aor_uri.user:
                self._respond(txn, flow, req, 403, "Credentials do not match the address", now=now)
                return
        contacts = req.get_all("Contact")
        expires_header = req.get("Expires")
        try:
            default = int(expires_header) if expires_header is not None else self.settings.default_expires
        except ValueError:
            self._respond(txn, flow, req, 400, "Bad Expires", now=now)
            return
        current = self.bindings.get(aor, [])
        outbound = False
        if contacts == ["*"]:
            if default != 0:
                self._respond(txn, flow, req, 400, "Wildcard Contact needs Expires: 0", now=now)
                return
            for b in current:
                self.events.append(Registered(b, removed=True))
            self.bindings.pop(aor, None)
            current = []
        elif contacts:
            if len(contacts) > self.settings.max_contacts_per_aor:
                self._respond(txn, flow, req, 403, "Too many contacts", now=now)
                return
            updates: list[tuple[NameAddr, int]] = []
            for raw in contacts:
                try:
                    contact = NameAddr.parse(raw)
                    SipUri.parse(contact.uri)
                    exp = int(contact.params.get("expires") or default)
                except ValueError:
                    self._respond(txn, flow, req, 400, "Bad Contact", now=now)
                    return
                if 0 < exp < self.settings.min_expires:
                    self._respond(txn, flow, req, 423, extra=[
                        ("Min-Expires", str(self.settings.min_expires))], now=now)
                    return
                updates.append((contact, min(exp, self.settings.max_expires)))
            cseq = req.cseq[0]
            for contact, exp in updates:
                instance = contact.params.get("+sip.instance")
                reg_id = contact.params.get("reg-id")
                same = [b for b in current if b.contact == contact.uri
                        or (instance and b.instance == instance and b.reg_id == reg_id)]
                for b in same:
                    if b.call_id == req.call_id and cseq <= b.cseq:
                        self._respond(txn, flow, req, 500, "Out of order", now=now)
                        return
                for b in same:
                    current.remove(b)
                if exp == 0:
                    for b in same:
                        self.events.append(Registered(b, removed=True))
                    continue
                if len(current) >= self.settings.max_contacts_per_aor:
                    self._respond(txn, flow, req, 403, "Too many contacts", now=now)
                    return
                if not same and sum(len(v) for v in self.bindings.values()) >= self.settings.max_bindings:
                    self._respond(txn, flow, req, 503, "Registrar full", now=now)
                    return
                binding = Binding(aor, contact.uri, now + exp, flow, instance, reg_id, req.call_id, cseq)
                outbound = outbound or bool(instance and reg_id)
                current.append(binding)
                self.events.append(Registered(binding, removed=False))
            if current:
                self.bindings[aor] = current
            else:
                self.bindings.pop(aor, None)
        extra = [(
            "Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}"
        ) for b in current]
        if outbound and "outbound" in (req.get("Supported") or ""):
            extra.append(("Require", "outbound"))  # RFC 5626 §6: this registrar is the edge
        if current:
            self._arm(min(b.expires_at for b in current))
        self._respond(txn, flow, req, 200, now=now, extra=extra)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        return [b for b in self.bindings.get(aor, []) if b.expires_at > now]

    # ------------------------------------------------------------------ calls

    def _invite(self, txn: _ServerTxn, flow: Flow, req: SipMessage, uri: SipUri, now: float) -> None:
        to = NameAddr.parse(req.get("To") or "")
        frm = NameAddr.parse(req.get("From") or "")
        if to.tag:
            self._reinvite(txn, flow, req, frm, to, now)
            return
        self._respond(txn, flow, req, 100, now=now)
        if uri.host.lower() not in self.settings.domains:
            self._respond(txn, flow, req, 404, "Not a domain of this gateway", now=now)
            return
        room = uri.user.lower()
        if not ROOM_RE.match(room):
            self._respond(txn, flow, req, 404, "No such room", now=now)
            return
        if req.body and (req.get("Content-Type") or "").split(";")[0].strip().lower() != "application/sdp":
            self._respond(txn, flow, req, 415, extra=[("Accept", "application/sdp")], now=now)
            return
        if not req.body:
            self._respond(txn, flow, req, 488, "An SDP offer is required", now=now)
            return
        user = ""
        if self.settings.invite_auth:
            found = self._authorize(txn, flow, req, now)
            if found is None:
                return
            user = found
        if len(self.calls) >= self.settings.max_calls:
            self._count("calls_refused")
            self._respond(txn, flow, req, 486, "Gateway busy", now=now)
            return
        contacts = req.get_all("Contact")
        try:
            target = NameAddr.parse(contacts[0]).uri if contacts else ""
            SipUri.parse(target)
        except (ValueError, IndexError):
            self._respond(txn, flow, req, 400, "Bad or missing Contact", now=now)
            return
        key = f"{req.call_id};{frm.tag or ''}"
        if key in self.calls:
            self._respond(txn, flow, req, 482, now=now)
            return
        display = (frm.display or SipUri.parse(frm.uri).user or "SIP caller")[:64] if frm.uri.startswith(
            ("sip:", "sips:")) else (frm.display or "SIP caller")[:64]
        call = Call(
            key=key, call_id=req.call_id, room=room, display_name=display, remote_uri=req.get("From") or "",
            local_uri=req.get("To") or "", remote_tag=frm.tag or "", local_tag=new_tag(),
            remote_target=target, route_set=req.get_all("Record-Route"), flow=flow, offer=req.body,
            invite=req, remote_cseq=req.cseq[0], authenticated_user=user, created=now,
        )
        txn.call_key = key
        self.calls[key] = call
        self._count("calls_offered")
        self._arm(now + self.settings.offer_timeout)
        self.events.append(CallOffered(call))

    def _contact(self, call: Call) -> str:
        transport = {"udp": "", "tcp": ";transport=tcp", "ws": ";transport=ws", "wss": ";transport=wss"}
        port = self.settings.ports.get("ws" if call.flow.transport == "wss" else call.flow.transport)
        hostport = f"{self.settings.host}:{port}" if port and call.flow.transport in ("udp", "tcp") else self.settings.host
        return f"<sip:{call.room}@{hostport}{transport[call.flow.transport]}>"

    def answer(self, key: str, sdp: bytes, now: float) -> bool:
        """200 OK with the gateway's SDP answer to an offered call (or a pending re-INVITE)."""
        call = self.calls.get(key)
        if call is None or call.state == "ended":
            return False
        request = call.reinvite or call.invite
        txn = self._txn_for(request)
        extra = [("Contact", self._contact(call)), ("Allow", ALLOW), ("Supported", "outbound")]
        data = self._respond(txn, call.flow, request, 200, to_tag=call.local_tag, extra=extra, body=sdp,
                             now=now)
        call.answer_sdp = sdp
        if call.reinvite is None:
            call.state = "answered"
        call.reinvite = None
        # the dialog retransmits its 2xx until the ACK (§13.3.1.4) over UDP, and on any transport
        # gives up after 64*T1 without one
        call.ok_bytes = data
        call.ok_interval = T1
        call.ok_next = now + T1 if not call.flow.reliable else now + 64 * T1
        call.ok_give_up = now + 64 * T1
        self._arm(call.ok_next)
        return True

    def reject(self, key: str, status: int, reason: str, now: float) -> None:
        call = self.calls.get(key)
        if call is None:
            return
        if call.reinvite is not None:
            txn = self._txn_for(call.reinvite)
            self._respond(txn, call.flow, call.reinvite, status, reason, to_tag=call.local_tag, now=now)
            call.reinvite = None
            return
        if call.state != "offered":
            return
        txn = self._txn_for(call.invite)
        self._respond(txn, call.flow, call.invite, status, reason, to_tag=call.local_tag, now=now)
        if txn is not None and not call.flow.reliable:
            txn.retransmit_at = now + T1
            txn.interval = T1
            txn.give_up_at = now + 64 * T1
            self._arm(txn.retransmit_at)
        self._end(call, f"rejected {status}")
        self.calls.pop(key, None)

    def hangup(self, key: str, reason: str, now: float) -> None:
        """The gateway ends a call: BYE for a confirmed dialog, 480 for one not answered yet."""
        call = self.calls.get(key)
        if call is None or call.state == "ended":
            return
        if call.state == "offered":
            self.reject(key, 480, reason, now)
            return
        call.local_cseq += 1
        bye = SipMessage(method="BYE", uri=call.remote_target)
        branch = new_branch()
        via_transport = {"udp": "UDP", "tcp": "TCP", "ws": "WS", "wss": "WSS"}[call.flow.transport]
        port = self.settings.ports.get(call.flow.transport) if call.flow.transport in ("udp", "tcp") else None
        sent_by = f"{self.settings.host}:{port}" if port else self.settings.host
        bye.add("Via", f"SIP/2.0/{via_transport} {sent_by};branch={branch};rport")
        bye.add("Max-Forwards", "70")
        for route in call.route_set:
            bye.add("Route", route)
        local = NameAddr.parse(call.local_uri)
        local.params["tag"] = call.local_tag
        bye.add("From", str(local))
        bye.add("To", call.remote_uri)
        bye.add("Call-ID", call.call_id)
        bye.add("CSeq", f"{call.local_cseq or 1} BYE")
        bye.add("Reason", f'SIP;cause=200;text="{reason[:60]}"')
        bye.add("User-Agent", self.settings.user_agent)
        data = self._send(call.flow, bye)
        self._client[branch] = _ClientTxn(branch, data, call.flow, "BYE", None,
                                          None if call.flow.reliable else now + T1, T1, now + 64 * T1)
        self._arm(now + T1)
        self._end(call, reason)
        self.calls.pop(key, None)

    def _txn_for(self, req: SipMessage) -> _ServerTxn | None:
        via = req.top_via
        return self._server.get((via.branch or "", f"{via.host}:{via.port}", "INVITE"))

    def _end(self, call: Call, reason: str) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        self._count("calls_ended")
        self.events.append(CallEnded(call, reason))

    def _find_dialog(self, req: SipMessage) -> Call | None:
        try:
            frm = NameAddr.parse(req.get("From") or "")
            to = NameAddr.parse(req.get("To") or "")
        except ValueError:
            return None
        call = self.calls.get(f"{req.call_id};{frm.tag or ''}")
        if call is None or (to.tag and to.tag != call.local_tag):
            return None
        return call

    def _ack(self, flow: Flow, req: SipMessage, txn: _ServerTxn | None, now: float) -> None:
        if txn is not None and txn.final >= 300:  # ACK of a non-2xx final: ends timer G/H (§17.2.1)
            txn.retransmit_at = None
            txn.expires_at = now + (0 if flow.reliable else T4)
            self._arm(txn.expires_at)
            return
        call = self._find_dialog(req)
        if call is None or call.state == "ended":
            return
        if req.cseq[0] != call.remote_cseq:
            return
        call.ok_bytes = b""
        if call.state == "answered":
            call.state = "confirmed"
            self.events.append(CallConfirmed(call))

    def _cancel(self, flow: Flow, req: SipMessage, now: float) -> None:
        via = req.top_via
        txn = self._server.get((via.branch or "", f"{via.host}:{via.port}", "INVITE"))
        if txn is None:
            self._respond(None, flow, req, 481, now=now)
            return
        call = self.calls.get(txn.call_key or "")
        self._respond(None, flow, req, 200, to_tag=call.local_tag if call else None, now=now)
        if txn.final == 0:
            if call is not None and call.state == "offered":
                self.reject(call.key, 487, "", now)
                call.state = "ended"
            else:
                self._respond(txn, flow, txn.request, 487, now=now)

    def _bye(self, txn: _ServerTxn, flow: Flow, req: SipMessage, now: float) -> None:
        call = self._find_dialog(req)
        if call is None:
            self._respond(txn, flow, req, 481, now=now)
            return
        if req.cseq[0] <= call.remote_cseq and call.state != "offered":
            self._respond(txn, flow, req, 500, "CSeq out of order", now=now)
            return
        self._respond(txn, flow, req, 200, to_tag=call.local_tag, now=now)
        if call.state == "offered":  # BYE before the answer: the INVITE gets 487 (§15.1.2)
            itxn = self._txn_for(call.invite)
            self._respond(itxn, call.flow, call.invite, 487, to_tag=call.local_tag, now=now)
        self._end(call, "remote hangup")
        self.calls.pop(call.key, None)

    def _info(self, txn: _ServerTxn, flow: Flow, req: SipMessage, now: float) -> None:
        """INFO in a dialog (RFC 6086) carrying a DTMF digit, ``application/dtmf-relay`` or
        ``application/dtmf`` (:func:`dtmf.parse_info`): 200 and a :class:`CallDigit`; 415 for
        another body, 400 for a malformed one, 403 beyond the caller's digit rate. An INFO without
        a body is answered 200 (a keep-alive)."""
        call = self._find_dialog(req)
        if call is None or call.state not in ("answered", "confirmed"):
            self._respond(txn, flow, req, 481, now=now)
            return
        if req.cseq[0] <= call.remote_cseq:
            self._respond(txn, flow, req, 500, "CSeq out of order", to_tag=call.local_tag, now=now)
            return
        call.remote_cseq = req.cseq[0]
        if not req.body:
            self._respond(txn, flow, req, 200, to_tag=call.local_tag, now=now)
            return
        content_type = req.get("Content-Type") or ""
        if content_type.split(";", 1)[0].strip().lower() not in dtmf.INFO_TYPES:
            self._respond(txn, flow, req, 415, to_tag=call.local_tag,
                          extra=[("Accept", ", ".join(dtmf.INFO_TYPES))], now=now)
            return
        try:
            digit = dtmf.parse_info(content_type, req.body)
        except ValueError as exc:
            self._count("bad_dtmf")
            self._respond(txn, flow, req, 400, f"Bad DTMF: {str(exc)[:60]}", to_tag=call.local_tag, now=now)
            return
        if not call.dtmf_rate.allow(now):
            self._count("dtmf_rate")
            self._respond(txn, flow, req, 403, "Too many DTMF digits", to_tag=call.local_tag, now=now)
            return
        self._respond(txn, flow, req, 200, to_tag=call.local_tag, now=now)
        self.events.append(CallDigit(call, digit))

    def _reinvite(self, txn: _ServerTxn, flow: Flow, req: SipMessage, frm: NameAddr, to: NameAddr,
                  now: float) -> None:
        call = self._find_dialog(req)
        if call is None:
            self._respond(txn, flow, req, 481, now=now)
            return
        if call.state != "confirmed" or call.reinvite is not None:
            self._respond(txn, flow, req, 491, to_tag=call.local_tag, extra=[("Retry-After", "1")], now=now)
            return
        if req.cseq[0] <= call.remote_cseq:
            self._respond(txn, flow, req, 500, "CSeq out of order", to_tag=call.local_tag, now=now)
            return
        self._respond(txn, flow, req, 100, now=now)
        call.remote_cseq = req.cseq[0]
        call.reinvite = req
        call.flow = flow  # a re-INVITE over a new connection of the same dialog moves the flow
        contacts = req.get_all("Contact")
        if contacts:
            try:
                call.remote_target = NameAddr.parse(contacts[0]).uri
            except ValueError:
                pass
        if req.body:
            self.events.append(CallReoffered(call, req.body))
        else:  # an offerless re-INVITE: our SDP again as the offer; the ACK carries the answer
            self.answer(call.key, call.answer_sdp, now)

    # ------------------------------------------------------------------ flows and time

    def flow_closed(self, flow: Flow, now: float) -> None:
        """A stream connection went away: its registrations and the calls on it end (RFC 5626
        §5.2: a flow that failed cannot carry anything any more)."""
        for aor in list(self.bindings):
            kept = [b for b in self.bindings[aor] if b.flow != flow]
            for b in self.bindings[aor]:
                if b.flow == flow:
                    self.events.append(Registered(b, removed=True))
            if kept:
                self.bindings[aor] = kept
            else:
                del self.bindings[aor]
        for call in list(self.calls.values()):
            if call.flow == flow:
                self._end(call, "connection closed")
                self.calls.pop(call.key, None)

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)
        # server transactions
        for key, txn in list(self._server.items()):
            if txn.retransmit_at is not None and txn.retransmit_at <= now:
                if now >= txn.give_up_at:
                    txn.retransmit_at = None
                else:
                    self.outbox.append(Send(txn.flow, txn.response))
                    txn.interval = min(txn.interval * 2, T2)
                    txn.retransmit_at = now + txn.interval
                    self._arm(txn.retransmit_at)
            if txn.final and txn.retransmit_at is None and txn.expires_at <= now:
                del self._server[key]
        # client transactions (BYE)
        for branch, ctx in list(self._client.items()):
            if now >= ctx.give_up_at:
                del self._client[branch]
            elif ctx.next_at is not None and ctx.next_at <= now:
                self.outbox.append(Send(ctx.flow, ctx.data))
                ctx.interval = min(ctx.interval * 2, T2)
                ctx.next_at = now + ctx.interval
                self._arm(ctx.next_at)
            else:
                self._arm(ctx.give_up_at if ctx.next_at is None else ctx.next_at)
        # 2xx retransmission and give-up (§13.3.1.4); calls the media side never answered
        for call in list(self.calls.values()):
            if call.state == "offered" and now - call.created >= self.settings.offer_timeout:
                self.reject(call.key, 480, "Joining the meeting timed out", now)
                self.calls.pop(call.key, None)
                continue
            if not call.ok_bytes:
                continue
            if now >= call.ok_give_up:
                call.ok_bytes = b""
                self._count("ack_timeouts")
                self.hangup(call.key, "no ACK", now)
                continue
            if call.ok_next <= now:
                if not call.flow.reliable:
                    self.outbox.append(Send(call.flow, call.ok_bytes))
                    call.ok_interval = min(call.ok_interval * 2, T2)
                    call.ok_next = now + call.ok_interval
                else:
                    call.ok_next = call.ok_give_up
                self._arm(call.ok_next)
        # registrations
        for aor in list(self.bindings):
            live = [b for b in self.bindings[aor] if b.expires_at > now]
            for b in self.bindings[aor]:
                if b.expires_at <= now:
                    self.events.append(Registered(b, removed=True))
            if live:
                self.bindings[aor] = live
                self._arm(min(b.expires_at for b in live))
            else:
                del self.bindings[aor]
