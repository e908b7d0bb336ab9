"""MSRP (RFC 4975) over WebSocket (RFC 7977), without I/O: frames, byte ranges, chunk
reassembly, one session's decisions, and the SDP of an ``m=message`` offer/answer.

Over WebSocket every MSRP chunk is one WebSocket message (RFC 7977 §5.1), so a frame is parsed
whole. Everything a caller sends is bounded: the frame (the WebSocket's own limit), header lines
and their count, the transaction id (RFC 4975 §9: 4 to 32 characters), a Byte-Range that must
match the body and stay within ``max_message`` bytes, chunks of a message in order, messages
being reassembled at once, and messages per second (a token bucket). Errors are answered with
RFC 4975 §7.2 status codes: 400 malformed, 413 too large (stop sending this message), 415 not
``text/plain``, 481 not this session, 403 too many messages.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common.token_bucket import TokenBucket

TID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+%=-]{3,31}$")
METHOD_RE = re.compile(r"^[A-Z]{1,16}$")
HEADER_RE = re.compile(r"^([A-Za-z0-9-]{1,64}):[ \t]*(.*)$")
RANGE_RE = re.compile(r"^(\d{1,10})-(\d{1,10}|\*)/(\d{1,10}|\*)$")
MAX_HEADERS = 32
MAX_HEADER_LINE = 2048
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 413: "Message Too Large",
           415: "Unsupported Media Type", 481: "Session Does Not Exist", 501: "Not Implemented"}


class MsrpError(Exception):
    def __init__(self, status: int, reason: str, tid: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.tid = tid  # known when the start line was readable: the error can be answered


@dataclass
class Frame:
    tid: str
    method: str = ""  # a request's method, "" for a response
    status: int = 0
    comment: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    flag: str = "$"  # '$' last chunk, '+' more follow, '#' aborted

    def get(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def to_bytes(self) -> bytes:
        start = f"MSRP {self.tid} {self.method}" if self.method else \
            f"MSRP {self.tid} {self.status:03d}" + (f" {self.comment}" if self.comment else "")
        head = "\r\n".join([start] + [f"{k}: {v}" for k, v in self.headers]) + "\r\n"
        out = head.encode()
        if self.body:
            out += b"\r\n" + self.body + b"\r\n"
        return out + f"-------{self.tid}{self.flag}\r\n".encode()


def parse_frame(data: bytes, max_size: int = 16384) -> Frame:
    """One whole MSRP frame; raises :class:`MsrpError` (with ``tid`` when it can be answered)."""
    if len(data) > max_size:
        raise MsrpError(413, "frame too large")
    first_end = data.find(b"\r\n")
    if first_end < 0 or first_end > MAX_HEADER_LINE:
        raise MsrpError(400, "no start line")
    try:
        start = data[:first_end].decode("ascii")
    except UnicodeDecodeError:
        raise MsrpError(400, "start line is not ASCII") from None
    parts = start.split(" ", 3)
    if len(parts) < 3 or parts[0] != "MSRP" or not TID_RE.match(parts[1]):
        raise MsrpError(400, "bad start line")
    tid = parts[1]
    frame = Frame(tid)
    if parts[2].isdigit() and len(parts[2]) == 3:
        frame.status = int(parts[2])
        frame.comment = parts[3] if len(parts) > 3 else ""
    elif METHOD_RE.match(parts[2]) and len(parts) == 3:
        frame.method = parts[2]
    else:
        raise MsrpError(400, "bad start line")
    # the end line: -------<tid><flag>CRLF, last in the frame (RFC 4975 §7.1)
    rest = data[first_end + 2 :]
    if rest.endswith(b"\r\n"):
        rest = rest[:-2]
    end = f"-------{tid}".encode()
    if len(rest) < len(end) + 1 or not rest[:-1].endswith(end) or rest[-1:] not in (b"$", b"+", b"#"):
        raise MsrpError(400, "no end line for this transaction", tid)
    frame.flag = rest[-1:].decode()
    rest = rest[: -len(end) - 1]
    blank = rest.find(b"\r\n\r\n")
    if blank >= 0:
        head, body = rest[:blank], rest[blank + 4 :]
        if not body.endswith(b"\r\n"):
            raise MsrpError(400, "body not followed by CRLF", tid)
        frame.body = body[:-2]
    else:
        if rest and not rest.endswith(b"\r\n"):
            raise MsrpError(400, "headers not ended by CRLF", tid)
        head = rest[:-2] if rest else b""
    lines = head.split(b"\r\n") if head else []
    if len(lines) > MAX_HEADERS:
        raise MsrpError(400, "too many headers", tid)
    for raw in lines:
        if len(raw) > MAX_HEADER_LINE:
            raise MsrpError(400, "header line too long", tid)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MsrpError(400, "header is not UTF-8", tid) from None
        m = HEADER_RE.match(line)
        if m is None:
            raise MsrpError(400, "malformed header", tid)
        frame.headers.append((m.group(1), m.group(2).strip()))
    return frame


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int | None  # None: '*'
    total: int | None


def parse_byte_range(value: str | None, body_len: int) -> ByteRange:
    """RFC 4975 §9 Byte-Range; absent means the whole message in this chunk (``1-*/*``)."""
    if value is None:
        return ByteRange(1, None, None)
    m = RANGE_RE.match(value.strip())
    if m is None:
        raise MsrpError(400, "bad Byte-Range")
    start = int(m.group(1))
    end = None if m.group(2) == "*" else int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if start < 1:
        raise MsrpError(400, "Byte-Range starts at 1")
    if end is not None and end != start + body_len - 1:
        raise MsrpError(400, "Byte-Range does not match the body")
    last = start + body_len - 1
    if total is not None and last > total:
        raise MsrpError(400, "Byte-Range beyond its total")
    return ByteRange(start, end, total)


def session_id_of(path: str) -> str | None:
    """The session id of the last URI of a To-Path/From-Path (``msrp://host:port/ID;ws``)."""
    uris = path.split()
    if not uris:
        return None
    uri = uris[-1]
    if not uri.lower().startswith(("msrp://", "msrps://")):
        return None
    rest = uri.split("://", 1)[1]
    if "/" not in rest:
        return None
    sid = rest.split("/", 1)[1].split(";", 1)[0]
    # RFC 4975 section 9: session-id = 1*( unreserved / "+" / "=" / "/" ), unreserved being RFC
    # 3986's ALPHA DIGIT "-" "." "_" "~" (the gateway's own ids come from token_urlsafe: "_", "-")
    return sid if re.match(r"^[A-Za-z0-9._~+%=-]{1,64}$", sid) else None


@dataclass
class _Partial:
    data: bytearray
    received: int


@dataclass(frozen=True)
class SessionLimits:
    max_message: int = 16384  # bytes of one reassembled message
    max_partial: int = 4  # messages being reassembled at once
    rate: float = 5.0  # new messages per second (services/common/token_bucket.py), after a burst of
    burst: float = 10.0
    chunk: int = 2048  # bytes per chunk the gateway sends


class MsrpSession:
    """One MSRP session between the caller and the gateway: what the caller sends (SEND chunks,
    REPORTs, responses) in, replies and whole text messages out; room chat out as SEND chunks."""

    def __init__(self, local_path: str, remote_path: str, limits: SessionLimits | None = None) -> None:
        self.local_path = local_path
        self.remote_path = remote_path
        self.limits = limits or SessionLimits()
        self.local_id = session_id_of(local_path)
        self._partial: dict[str, _Partial] = {}
        self._messages: TokenBucket | None = None  # new messages: full at the first
        self.received_messages = 0
        self.sent_messages = 0
        self.refused = 0

    # ---------------------------------------------------------------- in

    def receive(self, frame: Frame, now: float) -> tuple[list[bytes], list[str]]:
        """Replies to write back, and the text messages now complete."""
        if not frame.is_request:
            return [], []  # responses to our SENDs: nothing to do (we asked for no reports)
        try:
            text = self._request(frame, now)
        except MsrpError as exc:
            self.refused += 1
            return self._reply(frame, exc.status, exc.reason), []
        replies = [] if (frame.get("Failure-Report") or "").lower() == "no" or frame.method != "SEND" \
            else self._reply(frame, 200, "OK")
        return replies, [text] if text is not None else []

    def _request(self, frame: Frame, now: float) -> str | None:
        to_path = frame.get("To-Path") or ""
        from_path = frame.get("From-Path") or ""
        if session_id_of(to_path) != self.local_id or from_path.split() != self.remote_path.split():
            raise MsrpError(481, "not this session")  # RFC 4975 §7.3: paths must match the session
        if frame.method == "REPORT":
            return None
        if frame.method != "SEND":
            raise MsrpError(501, "only SEND and REPORT")
        message_id = frame.get("Message-ID") or ""
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.+%=-]{3,31}$", message_id):
            raise MsrpError(400, "bad Message-ID")
        rng = parse_byte_range(frame.get("Byte-Range"), len(frame.body))
        if rng.total is not None and rng.total > self.limits.max_message:
            raise MsrpError(413, "message too large")
        if frame.flag == "#":
            self._partial.pop(message_id, None)
            return None
        partial = self._partial.get(message_id)
        if partial is None:
            if not frame.body and frame.flag == "$":
                return None  # the empty SEND that opens a session (RFC 4975 §5.4)
            ctype = (frame.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "text/plain":
                raise MsrpError(415, "only text/plain")
            if rng.start != 1:
                raise MsrpError(400, "a message starts at byte 1")
            if len(self._partial) >= self.limits.max_partial:
                raise MsrpError(413, "too many messages in progress")
            if not self._take_token(now):
                raise MsrpError(403, "too many messages")
            partial = _Partial(bytearray(), 0)
        elif rng.start != partial.received + 1:
            self._partial.pop(message_id, None)
            raise MsrpError(400, "chunks out of order")
        if partial.received + len(frame.body) > self.limits.max_message:
            self._partial.pop(message_id, None)
            raise MsrpError(413, "message too large")
        partial.data += frame.body
        partial.received += len(frame.body)
        if frame.flag == "+":
            self._partial[message_id] = partial
            return None
        self._partial.pop(message_id, None)
        self.received_messages += 1
        return clean_text(bytes(partial.data))

    def _take_token(self, now: float) -> bool:
        if self._messages is None:
            self._messages = TokenBucket(self.limits.rate, self.limits.burst, now)
        return self._messages.take(now)

    def _reply(self, frame: Frame, status: int, comment: str) -> list[bytes]:
        if not frame.is_request:
            return []
        # a response goes back along the request's path: To-Path is the sender, From-Path us
        headers = [("To-Path", (frame.get("From-Path") or self.remote_path).split()[0][:512]),
                   ("From-Path", self.local_path)]
        return [Frame(frame.tid, status=status, comment=f"{REASONS.get(status, '')} {comment}".strip()[:100],
                      headers=headers).to_bytes()]

    # ---------------------------------------------------------------- out

    def send_text(self, text: str) -> list[bytes]:
        """A SEND request (in chunks of ``limits.chunk`` bytes) carrying ``text``."""
        body = text.encode("utf-8")[: self.limits.max_message]
        message_id = secrets.token_hex(8)
        out = []
        size = self.limits.chunk
        for offset in range(0, max(1, len(body)), size):
            piece = body[offset : offset + size]
            last = offset + size >= len(body)
            headers = [("To-Path", self.remote_path), ("From-Path", self.local_path), ("Message-ID", message_id),
                       ("Byte-Range", f"{offset + 1}-{offset + len(piece)}/{len(body)}"),
                       ("Success-Report", "no"), ("Failure-Report", "no"), ("Content-Type", "text/plain")]
            out.append(Frame(secrets.token_hex(6), method="SEND", headers=headers, body=piece,
                             flag="$" if last else "+").to_bytes())
        self.sent_messages += 1
        return out


def clean_text(data: bytes, limit: int = 4096) -> str:
    """UTF-8 text without control characters (newlines and tabs kept), at most ``limit`` characters."""
    text = data.decode("utf-8", "replace")
    return "".join(c for c in text if c in "\n\t" or (ord(c) >= 32 and ord(c) != 127))[:limit]


# ------------------------------------------------------------------------------------- SDP


@dataclass(frozen=True)
class MessageOffer:
    proto: str  # TCP/MSRP, TCP/TLS/MSRP, TCP/WS/MSRP, TCP/WSS/MSRP
    path: str
    accept_types: tuple[str, ...]


def parse_message_offer(sdp: str) -> MessageOffer | None:
    """The first ``m=message`` section of an offer (RFC 4975 §8, RFC 7977 §8); None if none."""
    proto = ""
    path = ""
    types: tuple[str, ...] = ()
    inside = False
    for raw in sdp.splitlines()[:200]:
        line = raw.strip()
        if line.startswith("m="):
            if inside:
                break
            parts = line[2:].split()
            inside = len(parts) >= 3 and parts[0] == "message"
            if inside:
                proto = parts[2].upper()
            continue
        if not inside or not line.startswith("a="):
            continue
        key, _, value = line[2:].partition(":")
        if key == "path":
            path = value.strip()[:1024]
        elif key == "accept-types":
            types = tuple(t.lower() for t in value.split()[:32])
    if not proto:
        return None
    if not proto.endswith("/MSRP") or not path or not session_id_of(path):
        raise ValueError("an m=message offer needs an MSRP protocol and an a=path")
    return MessageOffer(proto, path, types)


def accepts_text(offer: MessageOffer) -> bool:
    return any(t in ("text/plain", "text/*", "*") for t in offer.accept_types)


def message_answer(offer: MessageOffer, local_path: str, address: str, session_id: int) -> str:
    """An RFC 3264 answer with one ``m=message`` section (RFC 7977 §8: the gateway is passive,
    the WebSocket client connects)."""
    ip = "IP6" if ":" in address else "IP4"
    proto = "TCP/WSS/MSRP" if offer.proto in ("TCP/WSS/MSRP", "TCP/TLS/MSRP") else "TCP/WS/MSRP"
    port = local_path.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[-1]
    return "\r\n".join([
        "v=0", f"o=parley {session_id} 1 IN {ip} {address}", "s=Parley", f"c=IN {ip} {address}", "t=0 0",
        f"m=message {port if port.isdigit() else 9} {proto} *", "a=accept-types:text/plain",
        f"a=path:{local_path}", "a=setup:passive", "a=sendrecv",
    ]) + "\r\n"


class MsrpLink:
    """A call's MSRP session and the WebSocket carrying it (attached when the caller connects):
    room chat waits in a bounded backlog until then."""

    def __init__(self, session: MsrpSession, on_text: Callable[[str], None], backlog: int = 64) -> None:
        self.session = session
        self.on_text = on_text
        self.writer: Callable[[bytes], None] | None = None
        self.backlog: deque[bytes] = deque(maxlen=backlog)
        self.closed = False

    def attach(self, writer: Callable[[bytes], None]) -> bool:
        """The first WebSocket naming this session gets it; another is refused."""
        if self.writer is not None or self.closed:
            return False
        self.writer = writer
        while self.backlog:
            writer(self.backlog.popleft())
        return True

    def detach(self, writer: Callable[[bytes], None]) -> None:
        if self.writer is writer:
            self.writer = None

    def send_text(self, text: str) -> None:
        for frame in self.session.send_text(text):
            if self.writer is not None:
                self.writer(frame)
            else:
                self.backlog.append(frame)
