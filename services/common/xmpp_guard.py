"""A guarded stream reader for the services' own XMPP sessions (focus, bridges; slixmpp).

slixmpp feeds what it reads into an ``xml.etree`` pull parser and hands every complete stanza to
its handlers, which walk the tree recursively (stanza objects, XPath matchers, ``tostring``). A
stanza nested a few hundred levels deep raises ``RecursionError`` there; the exception leaves the
protocol's ``data_received`` and the event loop closes the connection, so one guest's IQ to
``focus@auth…/focus`` or ``jvb@auth…/<id>`` drops the service's session.

:class:`GuardedStreamMixin` replaces slixmpp's ``data_received`` with the same loop plus the
limits a server's parser has (Prosody's ``max_depth`` and stanza size): a stanza deeper than
``max_stanza_depth`` elements or larger than ``max_stanza_bytes`` is not built into a stanza
object — its finished sub-elements are freed as they end, and when it is complete an IQ
get/set is answered ``policy-violation`` (RFC 6120 section 8.3.3.12) and anything else dropped,
with one rate-limited log line. Any other exception while handling a single stanza is caught and
logged (rate-limited) instead of ending the session. The session, and every other stanza,
carries on.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as StdET
from typing import Any, cast

from slixmpp.xmlstream import ET
from slixmpp.xmlstream.tostring import tostring

from services.common.logging import RateLimitedLogger

log = logging.getLogger("xmpp.guard")

MAX_STANZA_DEPTH = 32
MAX_STANZA_BYTES = 1 << 20
_NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class GuardedStreamMixin:
    """Mix into a :class:`slixmpp.ClientXMPP` subclass (before it in the bases)."""

    max_stanza_depth: int = MAX_STANZA_DEPTH
    max_stanza_bytes: int = MAX_STANZA_BYTES

    # set by slixmpp's XMLStream
    parser: Any
    xml_depth: int
    xml_root: Any
    default_ns: str
    disconnect_reason: str | None

    def init_parser(self) -> None:
        super().init_parser()  # type: ignore[misc]
        self._stanza_bytes = 0
        self._stanza_poisoned: str | None = None
        self.stanzas_refused = getattr(self, "stanzas_refused", 0)
        if not hasattr(self, "_guard_log"):
            self._guard_log = RateLimitedLogger(log)

    def data_received(self, data: bytes | str) -> None:
        if self.parser is None:
            log.warning("received data before the connection is established")
            return
        if self.xml_depth > 1:
            self._stanza_bytes += len(data)
            if self._stanza_bytes > self.max_stanza_bytes and self._stanza_poisoned is None:
                self._stanza_poisoned = f"larger than {self.max_stanza_bytes} bytes"
        self.parser.feed(data)
        try:
            for event, element in self.parser.read_events():
                el = cast(StdET.Element, element)
                if event == "start":
                    self._start(el)
                elif event == "end" and self._end(el):
                    return
        except StdET.ParseError:
            # the stream itself is broken (the server sent bad XML): as slixmpp does, end it
            from slixmpp.stanza.stream_error import StreamError

            log.error("xmpp stream not well-formed; closing it")
            error = StreamError()
            error["condition"] = "not-well-formed"
            self.send(error)  # type: ignore[attr-defined]
            self.disconnect()  # type: ignore[attr-defined]

    def _start(self, el: StdET.Element) -> None:
        if self.xml_depth == 0:
            self.xml_root = el
            self.start_stream_handler(el)  # type: ignore[attr-defined]
        elif self.xml_depth == 1:
            self._stanza_bytes = 0
            self._stanza_poisoned = None
        elif self.xml_depth > self.max_stanza_depth and self._stanza_poisoned is None:
            self._stanza_poisoned = f"nested deeper than {self.max_stanza_depth} elements"
        self.xml_depth += 1

    def _end(self, el: StdET.Element) -> bool:
        """Returns True when the stream ended."""
        self.xml_depth -= 1
        if self.xml_depth == 0:
            self.disconnect_reason = "End of stream"
            self.abort()  # type: ignore[attr-defined]
            return True
        if self.xml_depth > 1:
            if self._stanza_poisoned is not None:
                el.clear()  # free what is finished of a stanza we will not handle
            return False
        # a complete stanza
        poisoned, self._stanza_poisoned = self._stanza_poisoned, None
        self._stanza_bytes = 0
        try:
            if poisoned is not None:
                self._refuse(el, poisoned)
            else:
                self._spawn_event(el)  # type: ignore[attr-defined]
        except Exception as exc:  # one stanza must never end the session (RecursionError included)
            self.stanzas_refused += 1
            self._guard_log.warning(
                ("handler", type(exc).__name__),
                "a stanza from %s could not be handled (%s: %s); dropped",
                el.get("from"),
                type(exc).__name__,
                str(exc)[:200],
            )
        finally:
            if self.xml_root is not None:
                self.xml_root.clear()
        return False

    def _refuse(self, el: StdET.Element, why: str) -> None:
        self.stanzas_refused += 1
        sender = el.get("from")
        self._guard_log.warning(("refused", why), "refused a <%s> from %s: %s", _local(el.tag), sender, why)
        if _local(el.tag) != "iq" or el.get("type") not in ("get", "set") or not sender:
            return
        reply = ET.Element(f"{{{self.default_ns}}}iq", {"type": "error", "to": sender})
        if el.get("id") is not None:
            reply.set("id", el.get("id", ""))
        error = ET.SubElement(reply, "error", {"type": "modify"})
        ET.SubElement(error, f"{{{_NS_STANZAS}}}policy-violation")
        ET.SubElement(error, f"{{{_NS_STANZAS}}}text").text = f"stanza {why}"
        self.send_raw(tostring(reply, xmlns=self.default_ns, stream=cast(Any, self), top_level=True))  # type: ignore[attr-defined]


def send_iq_error(iq: Any, condition: str, text: str, etype: str) -> None:
    """Answer a slixmpp IQ with an error (RFC 6120 section 8.3): the request echoed, then the error."""
    reply = iq.reply(clear=False)
    reply["type"] = "error"
    reply["error"]["type"] = etype
    reply["error"]["condition"] = condition
    reply["error"]["text"] = text
    reply.send()
