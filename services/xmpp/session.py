"""A client-to-server XMPP session as a sans-I/O state machine (RFC 6120 sections 4-7).

A transport adapter (TCP, WebSocket, BOSH) parses its framing into stream events and calls
:meth:`ClientSession.stream_opened`, :meth:`~ClientSession.element` and
:meth:`~ClientSession.stream_closed`; the session answers through its :class:`Link` (``write``
bytes, ``close`` the transport, ``restart`` the parser). States: wait for the stream header,
SASL, (restart) resource binding, then active stanza exchange. XEP-0198 lives here too because it
counts the stream's own stanzas.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .broker import Broker, HostPolicy
from .jid import JID, InvalidJid, parse_jid_uncached
from .limits import LoginGuard, log_limited
from .sasl import (
    TOO_MANY,
    Anonymous,
    Mechanism,
    Plain,
    SaslFailure,
    ScramSha1,
    TokenAnonymous,
    decode_payload,
    encode_payload,
)
from .stanza import (
    BIND_NS,
    SASL_NS,
    SESSION_NS,
    STANZA_KINDS,
    TLS_NS,
    error_reply,
    iq_result,
    stream_error,
)
from .stream_management import SM_NS, ResumptionRegistry, StreamManagement
from .tokens import TokenClaims
from .xml import (
    CLIENT_NS,
    FRAMING_NS,
    STREAM_NS,
    Element,
    StreamClosed,
    StreamEvent,
    StreamOpened,
    escape_attr,
)

log = logging.getLogger("xmpp.session")

MAX_SASL_FAILURES = 3

# streams this process closed with a stream error, by condition (read by the metrics collector)
STREAM_ERRORS: Counter[str] = Counter()


class TcpFraming:
    """RFC 6120 stream over TCP: one long XML document."""

    name = "tcp"

    def open(self, host: str, stream_id: str) -> bytes:
        return (
            f"<?xml version='1.0'?><stream:stream xmlns='{CLIENT_NS}' xmlns:stream='{STREAM_NS}' "
            f"id='{stream_id}' from='{escape_attr(host)}' version='1.0' xml:lang='en'>"
        ).encode()

    def stream_element(self, el: Element) -> bytes:
        return el.serialize("stream-declared").encode()

    def close(self) -> bytes:
        return b"</stream:stream>"


class WebSocketFraming:
    """RFC 7395: ``<open/>``/``<close/>`` in the framing namespace, one element per frame."""

    name = "websocket"

    def open(self, host: str, stream_id: str) -> bytes:
        return (
            f"<open xmlns='{FRAMING_NS}' id='{stream_id}' from='{escape_attr(host)}' "
            f"version='1.0' xml:lang='en'/>"
        ).encode()

    def stream_element(self, el: Element) -> bytes:
        return el.serialize().encode()

    def close(self) -> bytes:
        return f"<close xmlns='{FRAMING_NS}'/>".encode()


Framing = TcpFraming | WebSocketFraming | Any


@dataclass
class Link:
    """How a session reaches its transport; swapped onto an old session on XEP-0198 resume."""

    framing: Framing
    write: Callable[[bytes], None]
    close: Callable[[], None]
    restart: Callable[[], None] = lambda: None
    starttls: Callable[[], bool] | None = None  # returns True if it will upgrade after <proceed/>
    secure: bool = False
    session: ClientSession | None = None
    # a connection to the internal listener (c2s TCP from a trusted network): service accounts
    # may log in here without TLS
    internal: bool = False
    # the client's address for failed-login limits (the forwarded one behind a trusted proxy)
    address: str = ""
    # a JWT from the connection's URL (``?token=``), checked at SASL ANONYMOUS on token hosts
    token: str = ""

    def detach(self) -> None:
        """The transport is gone: its callbacks become no-ops, so the link no longer refers to
        the connection (whose methods they were) and the connection, its parser and buffers are
        freed by reference counting as soon as it closes, not at the next full garbage
        collection. A session kept for XEP-0198 resumption writes into nothing until resumed
        onto a new link."""
        self.write = _drop_bytes
        self.close = _nothing
        self.restart = _nothing
        self.starttls = None
        self.session = None  # the session refers to its link: no cycle is left to collect


def _drop_bytes(data: bytes) -> None:
    return None


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class SessionLimits:
    max_stanza_size: int = 262144
    allow_plain_without_tls: bool = False
    sm_resume_timeout: float = 60.0
    # XEP-0198: stanzas sent and not acknowledged before the stream is closed (Prosody's
    # smacks_max_unacked_stanzas idea); bounds a client that never acks, or a detached session
    max_unacked: int = 500
    max_depth: int = 32
    max_elements: int = 10000
    max_header_size: int = 8192
    # bytes queued towards one client (not yet taken by the kernel) before it is cut off
    max_outbound_bytes: int = 2 * 1024 * 1024
    login_guard: LoginGuard | None = None


class ClientSession:
    """One client's stream, from header to close."""

    def __init__(
        self,
        broker: Broker,
        link: Link,
        limits: SessionLimits = SessionLimits(),
        resumption: ResumptionRegistry | None = None,
        schedule: Callable[[float, Callable[[], None]], Any] | None = None,
        on_end: Callable[[ClientSession], None] | None = None,
    ) -> None:
        self.broker = broker
        self.link = link
        link.session = self
        self.limits = limits
        self.resumption = resumption
        self.schedule = schedule
        self.on_end = on_end
        self.state = "wait-open"
        self.host: HostPolicy | None = None
        self.username: str | None = None
        self.jid: JID = JID("", "", "")
        self.bound = False
        self.available = False
        self.priority = 0
        self.directed: set[str] = set()
        self.mechanism: Mechanism | None = None
        # the verified token of a session on a token host (room claim, user, moderator)
        self.claims: TokenClaims | None = None
        self.sasl_failures = 0
        self.sm: StreamManagement | None = None
        self.detached = False
        self.closed = False
        self.header_sent = False
        self.stream_id = ""
        self._expiry: Any = None
        self._token_timer: Any = None
        self._tarpit: Any = None  # a refused login's answer, delayed (LoginGuard.tarpit_delay)
        self.stanzas_in = 0
        self.overflowed = False

    # -- output ------------------------------------------------------------------------------
    def deliver(self, data: bytes) -> None:
        """A routed stanza for this client (already serialized with its ``to``)."""
        if self.closed or self.overflowed:
            return
        sm = self.sm
        if sm is not None:
            request = sm.stanza_sent(data)
            if len(sm.unacked) > self.limits.max_unacked:
                self.overflow("policy-violation", "too many unacknowledged stanzas")
                return
            if self.detached:
                return
            self.link.write(data)
            if request:
                self.link.write(self.link.framing.stream_element(Element("r", SM_NS)))
            return
        self.link.write(data)

    def _send(self, el: Element) -> None:
        if el.name in STANZA_KINDS and el.ns == CLIENT_NS:
            self.deliver(el.to_bytes())
        else:
            self.link.write(self.link.framing.stream_element(el))

    def _open_header(self) -> None:
        self.stream_id = uuid.uuid4().hex
        domain = self.host.domain if self.host else next(iter(self.broker.hosts), "localhost")
        self.link.write(self.link.framing.open(domain, self.stream_id))
        self.header_sent = True

    def fail(self, condition: str, text: str | None = None) -> None:
        """Close this stream with a stream error (RFC 6120 section 4.9)."""
        if self.closed:
            return
        log_limited(
            log,
            logging.INFO,
            "fail:" + condition,
            "closing stream %s (%s): %s %s",
            self.jid or "(unbound)",
            self.link.address or "?",
            condition,
            text or "",
        )
        STREAM_ERRORS[condition] += 1
        if not self.header_sent:
            self._open_header()
        framing = self.link.framing
        self.link.write(framing.stream_element(stream_error(condition, text)))
        self.link.write(framing.close())
        self._finish(resumable=False)
        self.link.close()

    def overflow(self, condition: str, text: str) -> None:
        """Too much is queued towards this client: stop queueing now, close the stream soon.

        Called while the broker is delivering (perhaps in the middle of a room's fan-out), so the
        close that changes rooms and routes is deferred to the next loop turn.
        """
        if self.closed or self.overflowed:
            return
        self.overflowed = True
        if self.sm is not None:
            self.sm.unacked.clear()
        log_limited(log, logging.INFO, "overflow", "closing stream %s: %s", self.jid or "(unbound)", text)
        if self.schedule is not None:
            self.schedule(0, lambda: self.fail(condition, text))
        else:
            self.fail(condition, text)

    def close(self) -> None:
        """Orderly close from our side (server shutdown, admin action)."""
        if self.closed:
            return
        if not self.header_sent:
            self._open_header()
        self.link.write(self.link.framing.close())
        self._finish(resumable=False)
        self.link.close()

    # -- input -------------------------------------------------------------------------------
    def receive(self, event: StreamEvent) -> None:
        """The one entry point of every transport: a stream header, the stream's end, or a
        top-level element. A bug handling one ends this stream only, with a stream error."""
        try:
            if isinstance(event, StreamOpened):
                self.stream_opened(event)
            elif isinstance(event, StreamClosed):
                self.stream_closed()
            else:
                self.element(event)
        except Exception:
            log_limited(
                log, logging.ERROR, "internal", "internal error handling input from %s", self.link.address,
                exc_info=True,
            )  # fmt: skip
            self.fail("internal-server-error")

    def stream_opened(self, opened: StreamOpened) -> None:
        if self.closed:
            return
        framing = self.link.framing
        expected = ("open", FRAMING_NS) if isinstance(framing, WebSocketFraming) else ("stream", STREAM_NS)
        host = self.broker.hosts.get((opened.attrs.get("to") or "").lower())
        self.host = self.host or host
        if (opened.name, opened.ns) != expected:
            self.fail("invalid-namespace", f"expected <{expected[0]} xmlns='{expected[1]}'>")
            return
        if host is None or (self.username is not None and host is not self.host):
            self.fail("host-unknown", f"no such host {opened.attrs.get('to')!r}")
            return
        if opened.attrs.get("version") != "1.0":
            self.fail("unsupported-version", "version 1.0 required")
            return
        if self.username is None and not self._login_possible() and self.link.starttls is None:
            self.fail("policy-violation", "service accounts log in only on the internal listener or over TLS")
            return
        self._open_header()
        features = Element("features", STREAM_NS)
        if self.username is None:
            self.state = "sasl"
            if self.link.starttls is not None and not self.link.secure:
                tls = features.sub("starttls", TLS_NS)
                if not self._login_possible():
                    tls.sub("required")
            mechs = features.sub("mechanisms", SASL_NS)
            for name in self._mechanisms():
                mechs.sub("mechanism", text=name)
        else:
            self.state = "bind"
            features.sub("bind", BIND_NS)
            features.sub("session", SESSION_NS).sub("optional")
            features.sub("sm", SM_NS)
        self.link.write(self.link.framing.stream_element(features))

    def _login_possible(self) -> bool:
        """Guests log in anywhere; service accounts only on the internal listener or over TLS."""
        assert self.host is not None
        return self.host.anonymous or self.host.public_login or self.link.secure or self.link.internal

    def _mechanisms(self) -> list[str]:
        assert self.host is not None
        if not self._login_possible():
            return []
        mechs = self.host.mechanisms
        if not self.link.secure and not self.limits.allow_plain_without_tls:
            mechs = [m for m in mechs if m != "PLAIN"]  # a password in the clear: TLS only
        return mechs

    def stream_closed(self) -> None:
        if self.closed:
            return
        self.link.write(self.link.framing.close())
        self._finish(resumable=False)
        self.link.close()

    def transport_lost(self) -> None:
        """The connection went away without a close: keep the session if it can be resumed."""
        if self.closed or self.detached:
            return
        self._finish(resumable=True)

    def element(self, el: Element) -> None:
        if self.closed:
            return
        state = self.state
        if state == "active" and el.ns == CLIENT_NS and el.name in STANZA_KINDS:
            self._stanza(el)
        elif el.ns == SM_NS:
            self._sm_element(el)
        elif state == "sasl":
            self._sasl_element(el)
        elif state == "bind":
            if el.ns == CLIENT_NS and el.name == "iq":
                self._bind(el)
            else:
                self.fail("not-authorized", "bind a resource first")
        elif state == "wait-open":
            self.fail("not-authorized", "stream not open")
        else:
            self.fail("unsupported-stanza-type", f"<{el.name} xmlns='{el.ns}'>")

    @property
    def service_account(self) -> bool:
        """Logged in to an account on a host that is not the guests' (the auth host: focus,
        bridges, recorders, SIP gateways); such a session's reading is not throttled like a
        guest's (``limits.rate-bytes-per-second`` instead of ``guest-rate-bytes-per-second``)."""
        return self.username is not None and self.host is not None and not self.host.guest

    # -- SASL --------------------------------------------------------------------------------
    def _sasl_element(self, el: Element) -> None:
        if self._tarpit is not None:
            return  # a refused login waits for its answer: nothing more (STARTTLS too) is looked at
        if el.ns == TLS_NS and el.name == "starttls" and self.link.starttls is not None:
            self.link.write(Element("proceed", TLS_NS).to_bytes())
            if self.link.starttls():
                self.header_sent = False
                self.link.secure = True
                self.link.restart()
            return
        if el.ns != SASL_NS:
            self.fail("not-authorized", "authenticate first")
            return
        guard = self.limits.login_guard
        now = time.monotonic()
        try:
            anonymous = self.host is not None and self.host.anonymous  # guests never fail a login
            if guard is not None and not anonymous and not guard.allowed(self.link.address, None, now):
                raise SaslFailure("temporary-auth-failure", TOO_MANY)
            if el.name == "auth":
                self.mechanism = self._make_mechanism(el.get("mechanism") or "")
                step = self.mechanism.start(decode_payload(el.text))
            elif el.name == "response":
                if self.mechanism is None:
                    raise SaslFailure("malformed-request", "no exchange in progress")
                step = self.mechanism.respond(decode_payload(el.text) or b"")
            elif el.name == "abort":
                raise SaslFailure("aborted")
            else:
                raise SaslFailure("malformed-request", f"unexpected <{el.name}>")
        except SaslFailure as failure:
            mech, self.mechanism = self.mechanism, None
            self.sasl_failures += 1
            if guard is not None and failure.condition == "not-authorized":
                guard.failed(self.link.address, mech.user if mech is not None else None, now)
            if failure.condition == "temporary-auth-failure":
                self.sasl_failures = MAX_SASL_FAILURES
            out = Element("failure", SASL_NS)
            out.sub(failure.condition)
            if failure.text:
                out.sub("text", text=failure.text)
            if (
                failure.condition == "temporary-auth-failure"
                and failure.text == TOO_MANY
                and guard is not None
                and self.schedule is not None
                and guard.hold(self.link.address)
            ):
                self._tarpit = self.schedule(guard.tarpit_delay, lambda: self._refused(out))
                return
            self.link.write(out.to_bytes())
            if self.sasl_failures >= MAX_SASL_FAILURES:
                self.fail("policy-violation", "too many failed authentication attempts")
            return
        if step.success:
            assert self.host is not None and step.username is not None
            self.username = step.username
            if isinstance(self.mechanism, TokenAnonymous):
                self.claims = self.mechanism.claims
                if self.claims is not None and self.host.end_session_on_expiry and self.schedule is not None:
                    left = max(0.0, self.claims.expires - time.time())
                    self._token_timer = self.schedule(left, self._token_expired)
            self.mechanism = None
            self.link.write(
                Element(
                    "success", SASL_NS, children=[encode_payload(step.additional)] if step.additional else []
                ).to_bytes()
            )
            self.state = "wait-open"
            self.header_sent = False
            self.link.restart()
        else:
            self.link.write(
                Element(
                    "challenge", SASL_NS, children=[encode_payload(step.challenge)] if step.challenge else []
                ).to_bytes()
            )

    def _refused(self, failure: Element) -> None:
        """A refused login's delayed answer: the failure, then the stream is closed."""
        self._release_tarpit(cancel=False)
        if self.closed:
            return
        self.link.write(failure.to_bytes())
        self.fail("policy-violation", "too many failed authentication attempts")

    def _release_tarpit(self, cancel: bool = True) -> None:
        if self._tarpit is None:
            return
        if cancel:
            self._tarpit.cancel()
        self._tarpit = None
        if self.limits.login_guard is not None:
            self.limits.login_guard.release(self.link.address)

    def _make_mechanism(self, name: str) -> Mechanism:
        assert self.host is not None
        if name not in self._mechanisms():
            raise SaslFailure("invalid-mechanism", f"{name} is not offered here")
        if name == "ANONYMOUS":
            if self.host.tokens is not None:
                return TokenAnonymous(self.host.tokens, self.link.token, self.host.allow_empty_token)
            return Anonymous()
        guard = self.limits.login_guard
        address = self.link.address

        def gate(user: str) -> bool:
            return guard is None or guard.allowed(address, user, time.monotonic())

        if name == "PLAIN":
            return Plain(self.host.accounts, gate)
        return ScramSha1(self.host.accounts, gate)

    # -- binding -----------------------------------------------------------------------------
    def _bind(self, iq: Element) -> None:
        bind = iq.find("bind", BIND_NS)
        if iq.get("type") != "set" or bind is None:
            reply = error_reply(iq, "not-authorized", "bind a resource first")
            if reply is not None:
                self._send(reply)
            return
        assert self.host is not None and self.username is not None
        requested = (bind.find("resource", BIND_NS) or Element("resource")).text.strip()
        resource = requested or uuid.uuid4().hex[:12]
        try:
            jid = parse_jid_uncached(f"{self.username}@{self.host.domain}/{resource}")
        except InvalidJid:
            reply = error_reply(iq, "bad-request", "resource not acceptable")
            if reply is not None:
                self._send(reply)
            return
        self.jid = jid
        old = self.broker.bind(self)
        if old is not None and old is not self and isinstance(old, ClientSession):
            old.fail("conflict", "replaced by a new session with the same resource")
        self.bound = True
        self.state = "active"
        result = iq_result(iq, Element("bind", BIND_NS))
        result.attrs.pop("from", None)
        result.attrs.pop("to", None)
        result.children[0].sub("jid", text=str(jid))  # type: ignore[union-attr]
        self._send(result)

    # -- stanzas -----------------------------------------------------------------------------
    def _stanza(self, el: Element) -> None:
        self.stanzas_in += 1
        if self.sm is not None:
            self.sm.stanza_received()
        el.attrs["from"] = str(self.jid)
        if el.name == "presence":
            self._track_presence(el)
        elif el.name == "iq" and el.get("type") in ("get", "set") and "to" not in el.attrs:
            if el.find("bind", BIND_NS) is not None:
                reply = error_reply(el, "not-allowed", "already bound")
                if reply is not None:
                    self._send(reply)
                return
        self.broker.route(el)

    def _track_presence(self, el: Element) -> None:
        to = el.get("to")
        kind = el.get("type")
        if to is None:
            if kind is None:
                self.available = True
                prio = el.find("priority")
                try:
                    self.priority = int(prio.text) if prio is not None else 0
                except ValueError:
                    self.priority = 0
            elif kind == "unavailable":
                self.available = False
                self._leave_directed()
        elif kind is None:
            self.directed.add(to)
        elif kind == "unavailable":
            self.directed.discard(to)

    def _leave_directed(self) -> None:
        targets, self.directed = self.directed, set()
        for to in targets:
            self.broker.route(
                Element("presence", CLIENT_NS, {"from": str(self.jid), "to": to, "type": "unavailable"})
            )

    # -- XEP-0198 ----------------------------------------------------------------------------
    def _sm_element(self, el: Element) -> None:
        name = el.name
        if name == "a" and self.sm is not None:
            try:
                h = int(el.get("h") or "")
            except ValueError:
                self.fail("undefined-condition", "bad h")
                return
            if not self.sm.ack(h):
                self.fail("undefined-condition", "acknowledged more stanzas than were sent")
        elif name == "r" and self.sm is not None:
            self.link.write(
                self.link.framing.stream_element(Element("a", SM_NS, {"h": str(self.sm.handled_in)}))
            )
        elif name == "enable" and self.state == "active" and self.sm is None:
            resume = (el.get("resume") in ("true", "1")) and self.resumption is not None
            self.sm = StreamManagement(resumable=resume)
            attrs = (
                {"id": self.sm.token, "resume": "true", "max": str(int(self.limits.sm_resume_timeout))}
                if resume
                else {}
            )
            self.link.write(self.link.framing.stream_element(Element("enabled", SM_NS, attrs)))
        elif name == "resume" and self.state == "bind":
            self._resume(el)
        else:
            self.link.write(
                self.link.framing.stream_element(
                    Element(
                        "failed",
                        SM_NS,
                        children=[Element("unexpected-request", "urn:ietf:params:xml:ns:xmpp-stanzas")],
                    )
                )
            )

    def _resume(self, el: Element) -> None:
        token = el.get("previd") or ""
        old = self.resumption.take(token) if self.resumption else None
        failed = Element(
            "failed", SM_NS, children=[Element("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas")]
        )
        if old is None or old.username != self.username or old.host is not self.host or old.sm is None:
            self.link.write(self.link.framing.stream_element(failed))
            return
        try:
            h = int(el.get("h") or "")
        except ValueError:
            h = -1
        replay = old.sm.replay_after(h) if h >= 0 else None
        if replay is None:
            self.link.write(self.link.framing.stream_element(failed))
            old._end_for_good()
            return
        # the old session adopts this connection; this object is discarded
        old.link = self.link
        self.link.session = old
        old.detached = False
        old.header_sent = True
        if old._expiry is not None:
            old._expiry.cancel()
            old._expiry = None
        self.closed = True
        self.link.write(
            self.link.framing.stream_element(
                Element("resumed", SM_NS, {"previd": token, "h": str(old.sm.handled_in)})
            )
        )
        for data in replay:
            self.link.write(data)

    # -- ending ------------------------------------------------------------------------------
    def _finish(self, resumable: bool) -> None:
        sm = self.sm
        if (
            resumable
            and sm is not None
            and sm.resumable
            and self.bound
            and self.resumption is not None
            and self.schedule is not None
        ):
            self.detached = True
            self.resumption.park(sm.token, self)
            self._expiry = self.schedule(self.limits.sm_resume_timeout, self._end_for_good)
            return
        self._end_for_good()

    def _token_expired(self) -> None:
        """``end-session-on-expiry``: the token's ``exp`` passed; the client must log in again."""
        self._token_timer = None
        if self.detached:  # parked for XEP-0198 resumption: it may not come back on an old token
            self._end_for_good()
        else:
            self.fail("policy-violation", "token expired: log in again with a new token")

    def _end_for_good(self) -> None:
        self._release_tarpit()
        if self._token_timer is not None:
            self._token_timer.cancel()
            self._token_timer = None
        if self.closed and not self.bound:
            return
        self.closed = True
        self.detached = False
        if self.sm is not None and self.resumption is not None:
            self.resumption.drop(self.sm.token, self)
        if self.bound:
            self.bound = False
            self._leave_directed()
            self.available = False
            self.broker.unbind(self)
        if self.on_end is not None:
            self.on_end(self)
