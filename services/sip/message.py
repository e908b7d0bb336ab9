"""SIP messages (RFC 3261 §7, §20, §25): parse with strict bounds, build, serialize. No I/O.

One module for the wire format: every other part of the gateway reads and writes SIP through
:class:`SipMessage`, :func:`parse`, :class:`StreamFramer` (TCP and other streams, §18.3) and the
header helpers here (Via, name-addr, URI). Limits: a message is at most ``max_size`` bytes, has at
most ``max_headers`` header lines, each at most ``MAX_LINE`` bytes, and a body exactly as long as
its Content-Length (mandatory on streams). Anything else raises :class:`SipParseError`, which
carries what could be read of the request so the transport can answer 400 to it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7
MAX_SIZE = 16384
MAX_HEADERS = 64
MAX_LINE = 4096
MAX_PARAMS = 32

# Compact forms (RFC 3261 §7.3.3 and the registry) -> canonical names.
COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
        "Content-Type", "Expires", "Route", "Record-Route", "Authorization", "WWW-Authenticate",
        "Proxy-Authorization", "Proxy-Authenticate", "Allow", "Supported", "Require",
        "User-Agent", "Server", "Min-Expires", "Path", "Unsupported", "Accept", "Reason",
        "Event", "Subject", "Content-Encoding", "Session-Expires", "Refer-To", "Referred-By",
        "Allow-Events", "Date", "Flow-Timer", "Retry-After", "Warning", "Proxy-Require",
    )
}
METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE",
                     "PRACK", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH"})
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 202: "Accepted", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 423: "Interval Too Brief", 429: "Too Many Requests",
    430: "Flow Failed", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
    513: "Message Too Large",
}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def canonical(name: str) -> str:
    low = name.strip().lower()
    if len(low) == 1 and low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low) or "-".join(part.capitalize() for part in low.split("-"))


class SipParseError(ValueError):
    """The bytes are not an acceptable SIP message. ``partial`` holds the start line and the headers
    read so far when the message is a request, so a 400 can be addressed (RFC 3261 §8.2, §21.4.1);
    ``fatal`` means a stream cannot be resynchronised and must be closed."""

    def __init__(self, reason: str, partial: SipMessage | None = None, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.fatal = fatal


@dataclass
class SipMessage:
    """A request (``method`` set) or a response (``status`` set); headers in order, names canonical."""

    method: str | None = None
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        name = canonical(name)
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (outside quotes and <>)."""
        name = canonical(name)
        out: list[str] = []
        for key, value in self.headers:
            if key == name:
                out.extend(split_list(value))
        return out

    def set(self, name: str, value: str) -> None:
        name = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        name = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        raw = self.get("CSeq") or ""
        num, _, method = raw.strip().partition(" ")
        return int(num), method.strip()

    @property
    def top_via(self) -> Via:
        raw = self.get_all("Via")
        return Via.parse(raw[0])

    def to_bytes(self) -> bytes:
        if self.method is not None:
            start = f"{self.method} {self.uri} {SIP_VERSION}"
        else:
            start = f"{SIP_VERSION} {self.status} {self.reason or reason_phrase(self.status)}"
        lines = [start]
        for key, value in self.headers:
            if key == "Content-Length":
                continue
            lines.append(f"{key}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


# ---------------------------------------------------------------------------------------------
# parsing


def _parse_head(head: bytes, max_headers: int) -> SipMessage:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("not UTF-8") from exc
    raw_lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    start = raw_lines[0]
    if len(start) > MAX_LINE:
        raise SipParseError("start line too long")
    msg = SipMessage()
    parts = start.split(" ", 2)
    if len(parts) != 3:
        raise SipParseError("bad start line")
    if parts[0] == SIP_VERSION:
        if not (len(parts[1]) == 3 and parts[1].isdigit()) or not 100 <= int(parts[1]) <= 699:
            raise SipParseError("bad status code")
        msg.status = int(parts[1])
        msg.reason = parts[2]
    else:
        method, uri, version = parts
        if not _TOKEN.match(method) or not method.isupper():
            raise SipParseError("bad method")
        if version != SIP_VERSION:
            raise SipParseError("bad SIP version")
        if not uri or any(ch.isspace() for ch in uri):
            raise SipParseError("bad request URI")
        msg.method = method
        msg.uri = uri
    count = 0
    for line in raw_lines[1:]:
        if not line:
            continue
        if len(line) > MAX_LINE:
            raise SipParseError("header line too long", msg if msg.method else None)
        if line[0] in " \t":  # folded continuation (RFC 3261 §7.3.1)
            if not msg.headers:
                raise SipParseError("continuation without a header", msg if msg.method else None)
            key, value = msg.headers[-1]
            msg.headers[-1] = (key, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            raise SipParseError("bad header line", msg if msg.method else None)
        count += 1
        if count > max_headers:
            raise SipParseError("too many headers", msg if msg.method else None)
        msg.headers.append((canonical(name), value.strip()))
    return msg


def _partial_head(data: bytes, max_size: int, max_headers: int) -> SipMessage | None:
    """What fits of an oversized message's head, whole lines only, to address the 400."""
    head_end = data.find(b"\r\n\r\n", 0, max_size)
    if head_end < 0:
        head_end = data.rfind(b"\r\n", 0, max_size)
    if head_end <= 0:
        return None
    try:
        partial = _parse_head(data[:head_end], max_headers)
    except SipParseError:
        return None
    return partial if partial.method else None


def _content_length(msg: SipMessage, required: bool) -> int | None:
    values = [v for k, v in msg.headers if k == "Content-Length"]
    if not values:
        if required:
            raise SipParseError("Content-Length missing", msg if msg.method else None, fatal=True)
        return None
    if len(values) > 1 and len(set(values)) > 1:
        raise SipParseError("conflicting Content-Length", msg if msg.method else None, fatal=True)
    raw = values[0].strip()
    if not raw.isdigit() or len(raw) > 9:
        raise SipParseError("bad Content-Length", msg if msg.method else None, fatal=True)
    return int(raw)


def check_mandatory(msg: SipMessage) -> None:
    """RFC 3261 §8.1.1: To, From, CSeq, Call-ID, Max-Forwards (requests) and Via must be present,
    CSeq well formed and, for requests, naming the request's method."""
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        values = [v for k, v in msg.headers if k == name]
        if not values or not values[0]:
            raise SipParseError(f"{name} missing", msg if msg.method else None)
        if name in ("From", "To", "Call-ID", "CSeq") and len(values) > 1:
            raise SipParseError(f"more than one {name}", msg if msg.method else None)
    try:
        num, method = msg.cseq
    except ValueError as exc:
        raise SipParseError("bad CSeq", msg if msg.method else None) from exc
    if not 0 <= num < 2**31 or not _TOKEN.match(method or "-"):
        raise SipParseError("bad CSeq", msg if msg.method else None)
    if msg.method is not None and method != msg.method:
        raise SipParseError("CSeq method does not match", msg)
    try:
        via = msg.top_via
    except ValueError as exc:
        raise SipParseError("bad Via", msg if msg.method else None) from exc
    if msg.method is not None:
        if not via.branch:
            raise SipParseError("Via without branch", msg)
        mf = msg.get("Max-Forwards")
        if mf is not None and (not mf.isdigit() or len(mf) > 3):
            raise SipParseError("bad Max-Forwards", msg)
        for name in ("From", "To"):
            try:
                NameAddr.parse(msg.get(name) or "")
            except ValueError as exc:
                raise SipParseError(f"bad {name}", msg) from exc


def parse(
    data: bytes,
    *,
    max_size: int = MAX_SIZE,
    max_headers: int = MAX_HEADERS,
    stream: bool = False,
    check: bool = True,
) -> SipMessage:
    """One whole message (a UDP datagram, a WebSocket message, or what :class:`StreamFramer` cut).

    On datagrams Content-Length may be missing (the body runs to the end); when present the body
    must be at least that long (extra bytes are dropped, RFC 3261 §18.3). ``check=False`` skips
    the mandatory-header checks (for reading the answers to malformed requests in tests)."""
    if len(data) > max_size:
        raise SipParseError("message too large", _partial_head(data, max_size, max_headers), fatal=True)
    head_end = data.find(b"\r\n\r\n")
    sep = 4
    if head_end < 0:
        head_end = data.find(b"\n\n")
        sep = 2
    if head_end < 0:
        head_end, sep = len(data), 0
    msg = _parse_head(data[:head_end], max_headers)
    body = data[head_end + sep :]
    length = _content_length(msg, required=stream)
    if length is not None:
        if length > len(body):
            raise SipParseError("body shorter than Content-Length", msg if msg.method else None, fatal=True)
        body = body[:length]
    msg.body = body
    if check:
        check_mandatory(msg)
    return msg


class StreamFramer:
    """Cuts a byte stream (TCP) into messages by Content-Length (RFC 3261 §18.3), skipping the
    CRLF keep-alives of RFC 5626 §3.5.1 between them. Bounded: a head or a message larger than
    ``max_size`` raises a fatal :class:`SipParseError` (the connection is then closed)."""

    def __init__(self, max_size: int = MAX_SIZE, max_headers: int = MAX_HEADERS) -> None:
        self.max_size = max_size
        self.max_headers = max_headers
        self._buf = bytearray()
        self.keepalives = 0  # CRLFCRLF pings seen, each to be answered with one CRLF

    def feed(self, data: bytes, check: bool = True) -> Iterator[SipMessage]:
        self._buf += data
        while True:
            # keep-alive pings between messages
            while self._buf[:2] == b"\r\n":
                if self._buf[:4] == b"\r\n\r\n":
                    del self._buf[:4]
                    self.keepalives += 1
                elif len(self._buf) >= 4 or self._buf[2:3] not in (b"", b"\r"):
                    del self._buf[:2]
                else:
                    return
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self.max_size:
                    raise SipParseError("message too large",
                                        _partial_head(bytes(self._buf), self.max_size, self.max_headers), fatal=True)
                return
            if end + 4 > self.max_size:
                raise SipParseError("message too large",
                                    _partial_head(bytes(self._buf), self.max_size, self.max_headers), fatal=True)
            head = _parse_head(bytes(self._buf[:end]), self.max_headers)
            length = _content_length(head, required=True)
            assert length is not None
            total = end + 4 + length
            if total > self.max_size:
                raise SipParseError("message too large", head if head.method else None, fatal=True)
            if len(self._buf) < total:
                return
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            yield parse(raw, max_size=self.max_size, max_headers=self.max_headers, stream=True, check=check)


# ---------------------------------------------------------------------------------------------
# header values


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes or <...>."""
    out: list[str] = []
    buf: list[str] = []
    quoted = angle = False
    escape = False
    for ch in value:
        if escape:
            buf.append(ch)
            escape = False
            continue
        if quoted and ch == "\\":
            escape = True
            buf.append(ch)
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        if ch == "," and not quoted and not angle:
            item = "".join(buf).strip()
            if item:
                out.append(item)
            buf = []
            continue
        buf.append(ch)
    item = "".join(buf).strip()
    if item:
        out.append(item)
    return out


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=1;b;c="x"`` -> ``{"a": "1", "b": None, "c": "x"}`` (names lower-cased), bounded."""
    params: dict[str, str | None] = {}
    for i, item in enumerate(p for p in text.split(";") if p.strip()):
        if i >= MAX_PARAMS:
            raise ValueError("too many parameters")
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not name or not _TOKEN.match(name):
            raise ValueError(f"bad parameter {name!r}")
        val = value.strip() if eq else None
        if val and len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = val[1:-1]
        params[name] = val
    return params


def format_params(params: dict[str, str | None]) -> str:
    out = []
    for k, v in params.items():
        out.append(f";{k}" if v is None else f";{k}={v}")
    return "".join(out)


@dataclass
class SipUri:
    """``sip:user@host:port;params`` (RFC 3261 §19.1); headers (?...) are kept but unused."""

    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.strip().partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips"):
            raise ValueError("not a sip: URI")
        rest, _, _headers = rest.partition("?")
        hostpart, _, params = rest.partition(";")
        user = ""
        if "@" in hostpart:
            user, _, hostpart = hostpart.rpartition("@")
            user = user.partition(":")[0]  # never keep a password
        host, port = _split_hostport(hostpart)
        return cls(scheme, user, host, port, parse_params(params))

    def __str__(self) -> str:
        userinfo = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}"


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if not text:
        raise ValueError("no host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("bad IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, _, port_text = text.partition(":")
        rest = ":" + port_text if port_text else ""
    if not re.match(r"^[A-Za-z0-9.\-\[\]:_]+$", host):
        raise ValueError("bad host")
    port = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or not 0 < int(rest[1:]) < 65536:
            raise ValueError("bad port")
        port = int(rest[1:])
    return host, port


@dataclass
class NameAddr:
    """``"Name" <uri>;params`` or ``uri;params`` (From, To, Contact, Route; RFC 3261 §20.10)."""

    display: str
    uri: str
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise ValueError("empty address")
        display = ""
        if "<" in text:
            lt = text.index("<")
            gt = text.find(">", lt)
            if gt < 0:
                raise ValueError("unterminated <")
            display = text[:lt].strip()
            if display.startswith('"'):
                if len(display) < 2 or not display.endswith('"'):
                    raise ValueError("bad display name")
                display = display[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            uri = text[lt + 1 : gt].strip()
            params = parse_params(text[gt + 1 :])
        else:
            uri, _, rest = text.partition(";")
            params = parse_params(rest)
        if ":" not in uri:
            raise ValueError("no URI scheme")
        return cls(display, uri, params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        disp = ""
        if self.display:
            disp = '"' + self.display.replace("\\", "\\\\").replace('"', '\\"') + '" '
        return f"{disp}<{self.uri}>{format_params(self.params)}"


@dataclass
class Via:
    """``SIP/2.0/UDP host:port;branch=...;rport`` (RFC 3261 §20.42, RFC 3581)."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> Via:
        proto, _, rest = text.strip().partition(" ")
        bits = [b.strip() for b in proto.split("/")]
        if len(bits) != 3 or bits[0].upper() != "SIP" or bits[1] != "2.0" or not bits[2]:
            raise ValueError("bad Via protocol")
        sent_by, _, params = rest.strip().partition(";")
        host, port = _split_hostport(sent_by)
        return cls(bits[2].upper(), host, port, parse_params(params))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def response_to(request: SipMessage, status: int, reason: str = "", *, to_tag: str | None = None,
                extra: Iterable[tuple[str, str]] = (), body: bytes = b"") -> SipMessage:
    """A response copying Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6), adding a To tag when
    given and the To header has none. Works on a partial (malformed) request too."""
    resp = SipMessage(status=status, reason=reason or reason_phrase(status))
    for key, value in request.headers:
        if key in ("Via", "From", "Call-ID", "CSeq"):
            resp.headers.append((key, value))
        elif key == "To":
            if to_tag and ";tag=" not in value.replace(" ", "").lower() and status > 100:
                value = f"{value};tag={to_tag}"
            resp.headers.append((key, value))
    for key, value in extra:
        resp.add(key, value)
    resp.body = body
    return resp
