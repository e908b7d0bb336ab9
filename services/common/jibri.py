"""Jibri's wire format: recorder registration, start/stop IQs and the room's recording status.

The shapes are those of Jitsi's Jibri protocol (namespace ``http://jitsi.org/protocol/jibri``, as
spoken between Jicofo, Jibri and lib-jitsi-meet):

* a recorder's presence in the brewery room (``jibribrewery@<internal-muc>``)::

    <jibri-status xmlns='http://jitsi.org/protocol/jibri'>
      <busy-status xmlns='http://jitsi.org/protocol/jibri' status='idle'/>
      <health-status xmlns='http://jitsi.org/protocol/health' status='healthy'/>
    </jibri-status>

  Parley adds the attributes ``capacity`` and ``active`` to ``busy-status`` (a recorder takes
  several recordings at once; Jibri's one-recording ``idle``/``busy`` stays meaningful: ``busy``
  means no capacity left);
* the control IQ, from a moderator to the focus and from the focus to a recorder::

    <jibri xmlns='http://jitsi.org/protocol/jibri' action='start' recording_mode='file'
           streamid='rtmp://...' session_id='...' room='room@muc...'/>

  answered with ``status='pending'|'on'|'off'`` (and ``failure_reason``), and sent by a recorder
  (``type='set'``, ``status=...``) when a recording changes on its own (ended, failed);
* the focus's presence in the conference room::

    <jibri-recording-status xmlns='http://jitsi.org/protocol/jibri' status='on'
           recording_mode='file' session_id='...' initiator='room@muc/nick'/>

Everything works on :mod:`xml.etree.ElementTree` elements (what slixmpp stanzas wrap). Values
that arrive from the network are checked and bounded here, once.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from enum import StrEnum
from urllib.parse import urlsplit

NS_JIBRI = "http://jitsi.org/protocol/jibri"
NS_HEALTH = "http://jitsi.org/protocol/health"
JIBRI_TAG = f"{{{NS_JIBRI}}}jibri"
STATUS_TAG = f"{{{NS_JIBRI}}}jibri-status"
BUSY_TAG = f"{{{NS_JIBRI}}}busy-status"
HEALTH_TAG = f"{{{NS_HEALTH}}}health-status"
RECORDING_STATUS_TAG = f"{{{NS_JIBRI}}}jibri-recording-status"

MAX_STREAM_ID = 1024
MAX_ATTRIBUTE = 256
_SESSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_STREAM_SCHEMES = ("rtmp://", "rtmps://")
_DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
# what a stream URL's path (application, stream key, query) may hold: RFC 3986's unreserved
# characters and the few delimiters stream keys use; no quotes, spaces, controls, "@", "#", "\\"
_STREAM_PATH = re.compile(r"^[A-Za-z0-9._~!$&()*+,;=:%/?-]*$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class JibriFormatError(ValueError):
    """A Jibri element that cannot be accepted (the message says why)."""


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    UNDEFINED = "undefined"


class Status(StrEnum):
    ON = "on"
    OFF = "off"
    PENDING = "pending"
    UNDEFINED = "undefined"


class RecordingMode(StrEnum):
    FILE = "file"
    STREAM = "stream"


def _enum(cls: type[StrEnum], value: str | None, default: StrEnum, what: str) -> StrEnum:
    if value is None or value == "":
        return default
    try:
        return cls(value)
    except ValueError:
        raise JibriFormatError(f"unknown {what} {value[:40]!r}") from None


def _bounded(el: ET.Element, name: str, limit: int = MAX_ATTRIBUTE) -> str | None:
    value = el.get(name)
    if value is not None and len(value) > limit:
        raise JibriFormatError(f"{name} longer than {limit} characters")
    return value


def valid_session_id(value: str) -> bool:
    return bool(_SESSION_ID.match(value))


@dataclass(frozen=True)
class JibriIq:
    """The ``<jibri/>`` payload of a control IQ (request or answer)."""

    action: Action = Action.UNDEFINED
    status: Status = Status.UNDEFINED
    recording_mode: RecordingMode | None = None
    stream_id: str | None = None
    session_id: str | None = None
    room: str | None = None
    failure_reason: str | None = None
    app_data: str | None = None

    def to_element(self) -> ET.Element:
        attrs: dict[str, str] = {}
        if self.action is not Action.UNDEFINED:
            attrs["action"] = self.action.value
        if self.status is not Status.UNDEFINED:
            attrs["status"] = self.status.value
        if self.recording_mode is not None:
            attrs["recording_mode"] = self.recording_mode.value
        for name, value in (
            ("streamid", self.stream_id),
            ("session_id", self.session_id),
            ("room", self.room),
            ("failure_reason", self.failure_reason),
            ("app_data", self.app_data),
        ):
            if value is not None:
                attrs[name] = value
        return ET.Element(JIBRI_TAG, attrs)

    @classmethod
    def from_element(cls, el: ET.Element) -> JibriIq:
        if el.tag != JIBRI_TAG:
            raise JibriFormatError(f"not a jibri element: {el.tag[:80]}")
        mode = el.get("recording_mode")
        session_id = _bounded(el, "session_id")
        if session_id is not None and not valid_session_id(session_id):
            raise JibriFormatError("session_id must be 1-64 letters, digits, '.', '_' or '-'")
        iq = cls(
            action=_enum(Action, el.get("action"), Action.UNDEFINED, "action"),  # type: ignore[arg-type]
            status=_enum(Status, el.get("status"), Status.UNDEFINED, "status"),  # type: ignore[arg-type]
            recording_mode=(
                _enum(RecordingMode, mode, RecordingMode.FILE, "recording_mode")  # type: ignore[arg-type]
                if mode
                else None
            ),
            stream_id=_bounded(el, "streamid", MAX_STREAM_ID),
            session_id=session_id,
            room=_bounded(el, "room"),
            failure_reason=_bounded(el, "failure_reason"),
            app_data=_bounded(el, "app_data", 4096),
        )
        return iq

    def checked_start(self) -> JibriIq:
        """A start request made usable: mode defaults to ``file``; ``stream`` needs an RTMP URL
        (``streamid`` is either a full ``rtmp://`` URL or a stream key, then the recorder's
        configured base URL is used)."""
        mode = self.recording_mode or RecordingMode.FILE
        if mode is RecordingMode.STREAM:
            if not self.stream_id:
                raise JibriFormatError("recording_mode='stream' needs a streamid")
            if "://" in self.stream_id:
                parse_stream_url(self.stream_id)
            elif not valid_stream_key(self.stream_id):
                raise JibriFormatError("a stream key may hold only letters, digits and URL path characters")
        return replace(self, recording_mode=mode)


@dataclass(frozen=True)
class StreamTarget:
    """A live stream's ``rtmp://`` / ``rtmps://`` URL taken apart and checked: the host is an IP
    address or a DNS name of letters, digits and hyphens (RFC 1123 section 2.1), the port a
    number, no user info, no fragment, the path of :data:`_STREAM_PATH` characters only. The URL
    handed to FFmpeg is rebuilt from these parts (:meth:`url`), so what FFmpeg's URL parser sees
    is what was checked (no ``user@host`` or backslash tricks read differently by two parsers)."""

    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int
    path: str  # "/app/key?query", or ""

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host when it is an IP address literal."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def url(self, host: str | None = None) -> str:
        """The URL, to ``host`` (an address the name resolved to) instead of the name if given."""
        name = host if host is not None else self.host
        if ":" in name:
            name = f"[{name}]"
        return f"{self.scheme}://{name}:{self.port}{self.path}"


def parse_stream_url(url: str) -> StreamTarget:
    """Check a full stream URL (:class:`StreamTarget`); raises :class:`JibriFormatError`."""
    if len(url) > MAX_STREAM_ID:
        raise JibriFormatError(f"stream URL longer than {MAX_STREAM_ID} characters")
    if not url.startswith(_STREAM_SCHEMES) or not url.isascii() or not url.isprintable():
        raise JibriFormatError("streamid must be an rtmp:// or rtmps:// URL or a stream key")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise JibriFormatError(f"bad stream URL: {exc}") from None
    if "@" in parts.netloc or parts.fragment or "#" in url:
        raise JibriFormatError("a stream URL may not hold user info or a fragment")
    host = (parts.hostname or "").lower()
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not _STREAM_PATH.match(path):
        raise JibriFormatError("the stream URL's path holds characters a stream URL does not use")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.rstrip(".").split(".")
        if not host or len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
            raise JibriFormatError("the stream URL's host is not a DNS name or an IP address") from None
        host = host.rstrip(".")
    if port == 0:
        raise JibriFormatError("the stream URL's port is 0")
    return StreamTarget(parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme], path)


def valid_stream_key(key: str) -> bool:
    """A stream key appended to the operator's base URL: path characters only, no ``..``."""
    return 0 < len(key) <= MAX_STREAM_ID and ".." not in key and bool(_STREAM_PATH.match(key))


def find_jibri(parent: ET.Element) -> ET.Element | None:
    return parent.find(JIBRI_TAG)


@dataclass(frozen=True)
class RecorderStatus:
    """A recorder's brewery presence: busy or idle, healthy or not, and Parley's capacity."""

    busy: bool = False
    healthy: bool = True
    capacity: int = 1
    active: int = 0
    http_url: str | None = None

    @property
    def free(self) -> int:
        return 0 if self.busy or not self.healthy else max(0, self.capacity - self.active)

    def to_element(self) -> ET.Element:
        el = ET.Element(STATUS_TAG)
        busy = {"status": "busy" if self.busy else "idle", "capacity": str(self.capacity),
                "active": str(self.active)}  # fmt: skip
        if self.http_url:
            busy["http_url"] = self.http_url
        ET.SubElement(el, BUSY_TAG, busy)
        ET.SubElement(el, HEALTH_TAG, {"status": "healthy" if self.healthy else "unhealthy"})
        return el

    @classmethod
    def from_element(cls, el: ET.Element) -> RecorderStatus:
        busy_el = el.find(BUSY_TAG)
        health_el = el.find(HEALTH_TAG)
        busy = busy_el is not None and busy_el.get("status") == "busy"
        healthy = health_el is None or health_el.get("status", "healthy") == "healthy"

        def number(name: str, default: int) -> int:
            raw = busy_el.get(name) if busy_el is not None else None
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise JibriFormatError(f"{name} is not a number") from None
            if not 0 <= value <= 10_000:
                raise JibriFormatError(f"{name} out of range")
            return value

        capacity = number("capacity", 1)
        active = number("active", 1 if busy else 0)
        url = busy_el.get("http_url") if busy_el is not None else None
        if url is not None and (len(url) > MAX_ATTRIBUTE or not url.startswith(("http://", "https://"))):
            url = None
        return cls(busy=busy, healthy=healthy, capacity=capacity, active=active, http_url=url)


def find_status(presence: ET.Element) -> ET.Element | None:
    return presence.find(STATUS_TAG)


@dataclass(frozen=True)
class RecordingStatus:
    """``<jibri-recording-status/>`` in the focus's presence in a conference room."""

    status: Status
    recording_mode: RecordingMode = RecordingMode.FILE
    session_id: str | None = None
    initiator: str | None = None
    failure_reason: str | None = None

    def to_element(self) -> ET.Element:
        attrs = {"status": self.status.value, "recording_mode": self.recording_mode.value}
        for name, value in (
            ("session_id", self.session_id),
            ("initiator", self.initiator),
            ("failure_reason", self.failure_reason),
        ):
            if value is not None:
                attrs[name] = value
        return ET.Element(RECORDING_STATUS_TAG, attrs)

    @classmethod
    def from_element(cls, el: ET.Element) -> RecordingStatus:
        return cls(
            status=_enum(Status, el.get("status"), Status.UNDEFINED, "status"),  # type: ignore[arg-type]
            recording_mode=_enum(
                RecordingMode, el.get("recording_mode"), RecordingMode.FILE, "recording_mode"
            ),  # type: ignore[arg-type]
            session_id=_bounded(el, "session_id"),
            initiator=_bounded(el, "initiator"),
            failure_reason=_bounded(el, "failure_reason"),
        )


def find_recording_status(presence: ET.Element) -> ET.Element | None:
    return presence.find(RECORDING_STATUS_TAG)


# Jingle session ids of a recorder's media sessions: "<recording session id>-<n>", so the recorder
# knows which recording a session-initiate belongs to (one recorder holds several).
def media_sid(session_id: str, attempt: int) -> str:
    return f"{session_id}-{attempt}"


def session_of_sid(sid: str) -> str | None:
    head, sep, tail = sid.rpartition("-")
    return head if sep and tail.isdigit() and valid_session_id(head) else None
