"""XML for XMPP streams: a small element model, a hardened incremental parser, a serializer.

The parser is expat (C) driven incrementally. XMPP forbids DTDs, entity declarations, comments and
processing instructions (RFC 6120 section 11.1), so each of those stops the parse with
:class:`XmlStreamError` carrying the stream error condition to send. Every input is bounded while
it is still arriving, before it is held in memory whole:

* a stanza (complete or partial, including an unterminated start tag inside it) larger than
  ``max_size`` bytes;
* the stream header (and anything before it) larger than ``max_header`` bytes;
* anything pending between stanzas (an unterminated top-level start tag) larger than
  ``max_size`` bytes;
* more than ``max_elements`` elements in one stanza (each costs a few hundred bytes of Python
  objects, a hundred times its wire size);
* elements nested deeper than ``max_depth`` (the stanza itself is depth 1), so nothing recursive
  downstream (serializer, copies, services' XML libraries) can run out of stack;
* across every stream of the server, the elements held in stanzas still arriving
  (:class:`ElementBudget`): past its limit, a stream whose unfinished stanza holds more than
  :attr:`ElementBudget.small` elements is closed with ``resource-constraint``, so many connections
  each holding a partial stanza cannot fill the memory (or make every garbage collection pass walk
  hundreds of thousands of objects), while small stanzas still get through.

Input is fed to expat in pieces of at most :attr:`StreamParser.CHUNK` bytes and the limits are
checked after each piece. Expat 2.5 re-scans an unfinished token (a start tag whose attribute
value is still arriving, say) from its beginning on every ``Parse`` call (CVE-2023-52425), so a
token growing by one piece per call would cost its size squared over the piece size. Once expat
holds an unfinished token of :attr:`StreamParser.HOLD_FROM` bytes or more, pieces without a ``>``
are kept back until they add up to as much as that token, then handed over together: every
re-scan at least doubles the token, so scanning it costs a few times its size. No event waits on
what is kept back: every tag, so every stanza, the stream header and its end, needs a ``>`` to
finish, and a piece with one is handed over at once (with what was kept before it). The limits
count what is kept back as fed.

Elements carry their namespace URI and local name; the serializer declares a default namespace
only where it changes, so a stanza serializes identically for TCP and WebSocket streams.
"""

from __future__ import annotations

import pyexpat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

STREAM_NS = "http://etherx.jabber.org/streams"
FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
CLIENT_NS = "jabber:client"
XML_NS = "http://www.w3.org/XML/1998/namespace"

_SEP = "\x01"  # expat namespace separator: never valid in XML names


class XmlStreamError(Exception):
    """The peer sent XML the stream cannot accept. ``condition`` is the RFC 6120 stream error."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


def escape_text(s: str) -> str:
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    return s


def escape_attr(s: str) -> str:
    s = escape_text(s)
    if "'" in s:
        s = s.replace("'", "&apos;")
    if '"' in s:
        s = s.replace('"', "&quot;")
    return s


class Element:
    """One XML element: namespace URI, local name, attributes (qualified names), children.

    Children are elements or text strings, in document order, so mixed content round-trips.
    """

    __slots__ = ("attrs", "children", "name", "ns")

    def __init__(
        self,
        name: str,
        ns: str = CLIENT_NS,
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.name = name
        self.ns = ns
        self.attrs = attrs if attrs is not None else {}
        self.children = children if children is not None else []

    # -- reading ----------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attrs.get(key, default)

    @property
    def text(self) -> str:
        return "".join(c for c in self.children if isinstance(c, str))

    def elements(self) -> Iterator[Element]:
        for c in self.children:
            if isinstance(c, Element):
                yield c

    def find(self, name: str, ns: str | None = None) -> Element | None:
        for c in self.children:
            if isinstance(c, Element) and c.name == name and (ns is None or c.ns == ns):
                return c
        return None

    def find_all(self, name: str, ns: str | None = None) -> list[Element]:
        return [c for c in self.elements() if c.name == name and (ns is None or c.ns == ns)]

    def find_ns(self, ns: str) -> Element | None:
        """The first child in namespace ``ns`` (the payload of an IQ, say)."""
        for c in self.children:
            if isinstance(c, Element) and c.ns == ns:
                return c
        return None

    def first_element(self) -> Element | None:
        return next(self.elements(), None)

    # -- building ---------------------------------------------------------------------------
    def append(self, child: Element | str) -> Element | str:
        self.children.append(child)
        return child

    def sub(
        self, name: str, ns: str | None = None, attrs: dict[str, str] | None = None, text: str | None = None
    ) -> Element:
        """Append a child element (namespace inherited unless given) and return it."""
        child = Element(name, self.ns if ns is None else ns, attrs)
        if text is not None:
            child.children.append(text)
        self.children.append(child)
        return child

    def copy(self) -> Element:
        return Element(
            self.name,
            self.ns,
            dict(self.attrs),
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )

    def shallow_copy(self) -> Element:
        """Same attributes copied, same child objects (children are treated as immutable)."""
        return Element(self.name, self.ns, dict(self.attrs), list(self.children))

    # -- writing ----------------------------------------------------------------------------
    def serialize(self, parent_ns: str | None = None) -> str:
        out: list[str] = []
        _write(self, parent_ns, out)
        return "".join(out)

    def to_bytes(self) -> bytes:
        return self.serialize().encode()

    def split_at_to(self) -> tuple[bytes, bytes]:
        """Serialize with the ``to`` attribute last and cut there: ``head + escaped_to + tail``.

        Fan-out (MUC broadcast) serializes a stanza once and only splices the recipient in.
        """
        attrs = {k: v for k, v in self.attrs.items() if k != "to"}
        el = Element(self.name, self.ns, attrs, self.children)
        text = el.serialize()
        # the first '>' ends the start tag: attribute values have '>' escaped
        cut = text.index(">")
        if text[cut - 1] == "/":
            cut -= 1
        return (text[:cut] + " to='").encode(), ("'" + text[cut:]).encode()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<Element {self.serialize()[:200]}>"


_STREAM_PREFIXED = {STREAM_NS}


def _write(el: Element, parent_ns: str | None, out: list[str]) -> None:
    if el.ns == STREAM_NS:
        tag = "stream:" + el.name
        out.append("<" + tag)
        if parent_ns != STREAM_NS and parent_ns != "stream-declared":
            out.append(f" xmlns:stream='{STREAM_NS}'")
        child_ns: str | None = parent_ns
    else:
        tag = el.name
        out.append("<" + tag)
        if el.ns != parent_ns:
            out.append(f" xmlns='{escape_attr(el.ns)}'")
        child_ns = el.ns
    for k, v in el.attrs.items():
        if k[0] == "{":
            uri, local = k[1:].split("}", 1)
            out.append(f" xmlns:ns1='{escape_attr(uri)}' ns1:{local}='{escape_attr(v)}'")
        else:
            out.append(f" {k}='{escape_attr(v)}'")
    if not el.children:
        out.append("/>")
        return
    out.append(">")
    for c in el.children:
        if isinstance(c, str):
            out.append(escape_text(c))
        else:
            _write(c, child_ns, out)
    out.append("</" + tag + ">")


def _split_name(qname: str) -> tuple[str, str]:
    if _SEP in qname:
        ns, local = qname.split(_SEP, 1)
        return ns, local
    return "", qname


def _attr_name(qname: str) -> str:
    if _SEP not in qname:
        return qname
    ns, local = qname.split(_SEP, 1)
    if ns == XML_NS:
        return "xml:" + local
    return "{" + ns + "}" + local


@dataclass(frozen=True)
class StreamOpened:
    """The stream header arrived (TCP ``<stream:stream>`` or WebSocket ``<open/>``)."""

    ns: str
    name: str
    attrs: dict[str, str]


@dataclass(frozen=True)
class StreamClosed:
    """``</stream:stream>`` (or a WebSocket ``<close/>``)."""


StreamEvent = StreamOpened | StreamClosed | Element


def _refuse(what: str) -> NoReturn:
    raise XmlStreamError("restricted-xml", f"{what} not allowed in XMPP")


DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_HEADER = 8192
DEFAULT_MAX_ELEMENTS = 10000


def _too_deep(limit: int) -> NoReturn:
    raise XmlStreamError("policy-violation", f"elements nested deeper than {limit}")


class ElementBudget:
    """Elements held in unfinished stanzas across all the streams that share it (one per server).

    A stream takes one unit per element as it is parsed and gives its stanza's units back when the
    stanza is complete or the stream is dropped. Over ``limit``, a stanza that already holds more
    than ``small`` elements is refused: the connections holding big partial stanzas are the ones cut
    off, an ordinary stanza arriving meanwhile is not.
    """

    __slots__ = ("held", "limit", "refused", "small")

    def __init__(self, limit: int = 50000, small: int = 1000) -> None:
        self.limit = limit
        self.small = small
        self.held = 0
        self.refused = 0


class _Builder:
    """Shared expat callbacks; subclasses decide what depth means."""

    def __init__(
        self, max_size: int, max_depth: int = DEFAULT_MAX_DEPTH, max_elements: int = DEFAULT_MAX_ELEMENTS
    ) -> None:
        self.max_size = max_size
        self.max_depth = max_depth
        self.max_elements = max_elements
        self._count = 0  # elements in the stanza (or document) being built
        self.parser = self._new_parser()

    def _counted(self) -> None:
        self._count += 1
        if self._count > self.max_elements:
            raise XmlStreamError("policy-violation", f"more than {self.max_elements} elements in a stanza")

    def _new_parser(self) -> pyexpat.XMLParserType:
        p = pyexpat.ParserCreate("UTF-8", namespace_separator=_SEP)
        p.buffer_text = True
        p.buffer_size = 65536
        p.ordered_attributes = False
        p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = lambda *a: _refuse("DOCTYPE")
        p.EntityDeclHandler = lambda *a: _refuse("entity declaration")
        p.UnparsedEntityDeclHandler = lambda *a: _refuse("entity declaration")
        p.ExternalEntityRefHandler = lambda *a: _refuse("external entity")
        p.NotationDeclHandler = lambda *a: _refuse("notation declaration")
        p.CommentHandler = lambda *a: _refuse("comment")
        p.ProcessingInstructionHandler = lambda *a: _refuse("processing instruction")
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        return p

    def _start(self, qname: str, attrs: dict[str, str]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end(self, qname: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _chars(self, data: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _element(qname: str, attrs: dict[str, str]) -> Element:
        ns, local = _split_name(qname)
        if attrs:
            for k in attrs:
                if _SEP in k:
                    attrs = {_attr_name(k2): v for k2, v in attrs.items()}
                    break
        return Element(local, ns, attrs)


_HANDLERS = (
    "StartDoctypeDeclHandler",
    "EntityDeclHandler",
    "UnparsedEntityDeclHandler",
    "ExternalEntityRefHandler",
    "NotationDeclHandler",
    "CommentHandler",
    "ProcessingInstructionHandler",
    "StartElementHandler",
    "EndElementHandler",
    "CharacterDataHandler",
)


def _unhook(parser: pyexpat.XMLParserType) -> None:
    """Take every handler off an expat parser that will not be fed again, so it no longer refers
    to its builder and is freed (with its buffers) as soon as the builder lets go of it."""
    for name in _HANDLERS:
        setattr(parser, name, None)


_DEAD_PARSER = pyexpat.ParserCreate()
"""What a discarded :class:`StreamParser` points at: never fed, holds no handler and no buffer."""


class StreamParser(_Builder):
    """Incremental parser of one XMPP TCP stream: feed bytes, get stream events.

    Depth 0 is the stream header, depth 1 elements are stanzas (or stream-level elements such as
    SASL and stream management ones). Call :meth:`reset` on a stream restart (after SASL or TLS).
    """

    CHUNK = 16384
    HOLD_FROM = 8192  # an unfinished token this large: keep back pieces that cannot finish it

    def __init__(
        self,
        max_stanza_size: int = 262144,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_header: int = DEFAULT_MAX_HEADER,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        budget: ElementBudget | None = None,
    ) -> None:
        self.budget = budget
        self._events: list[StreamEvent] = []
        self._stack: list[Element] = []
        self._opened = False
        self._fed = 0  # bytes fed to this stream (since its last restart), kept back ones included
        self._parsed = 0  # bytes handed to expat
        self._held: list[bytes] = []  # pieces kept back (no '>'): the rest of an unfinished token
        self._held_bytes = 0
        self._stanza_start = 0
        self._idle_mark = 0  # where the last top-level event ended: bytes after it are pending
        self._discarded = False
        self.max_header = max_header
        super().__init__(max_stanza_size, max_depth, max_elements)

    def reset(self) -> None:
        self._give_back()
        self.parser = self._new_parser()
        self._stack = []
        self._opened = False
        self._fed = self._parsed = self._held_bytes = 0
        self._held = []
        self._stanza_start = 0
        self._idle_mark = 0
        self._events = []

    @property
    def pending(self) -> int:
        """Bytes fed that belong to no finished event yet (what an attacker can make us hold)."""
        if self._stack:
            return self._fed - self._stanza_start
        return self._fed - self._idle_mark

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self._discarded:
            return []
        events = self._events = []
        parser = self.parser
        for i in range(0, len(data), self.CHUNK):
            piece = data[i : i + self.CHUNK]
            self._fed += len(piece)
            # the unfinished token expat would re-scan: from the start of the event it is in
            unfinished = self._parsed - max(parser.CurrentByteIndex, 0)
            if (
                unfinished >= self.HOLD_FROM
                and b">" not in piece
                and self._held_bytes + len(piece) < unfinished
            ):
                self._held.append(piece)
                self._held_bytes += len(piece)
            else:
                if self._held:
                    self._held.append(piece)
                    piece = b"".join(self._held)
                    self._held, self._held_bytes = [], 0
                self._parsed += len(piece)
                try:
                    parser.Parse(piece, False)
                except pyexpat.ExpatError as exc:
                    self._drop()
                    raise XmlStreamError("not-well-formed", str(exc)) from None
                except XmlStreamError:
                    self._drop()
                    raise
            if self._stack:
                if self._fed - self._stanza_start > self.max_size:
                    self._drop()
                    raise XmlStreamError("policy-violation", f"stanza larger than {self.max_size} bytes")
            elif not self._opened:
                if self._fed > self.max_header:
                    self._drop()
                    raise XmlStreamError(
                        "policy-violation", f"stream header larger than {self.max_header} bytes"
                    )
            elif self._fed - self._idle_mark > self.max_size:
                self._drop()
                raise XmlStreamError(
                    "policy-violation", f"unterminated tag larger than {self.max_size} bytes"
                )
        return events

    def discard(self) -> None:
        """The connection is gone: free the partial stanza and the expat parser now, not at the
        next full garbage collection. The parser's handlers are this object's bound methods, so
        the two refer to each other; each expat parser also holds its 64 KiB text buffer
        (``buffer_size``). Clearing the handlers breaks that cycle, and no new parser is made:
        a stream that is gone is fed nothing more (:meth:`feed` then returns no events)."""
        self._give_back()
        self._stack = []
        self._events = []
        self._held, self._held_bytes = [], 0
        self._discarded = True
        _unhook(self.parser)
        self.parser = _DEAD_PARSER  # this object may outlive the stream (its connection's cycle)

    def _give_back(self) -> None:
        """The stanza being built is complete or gone: its elements leave the shared budget."""
        if self.budget is not None:
            self.budget.held -= self._count
        self._count = 0

    def _drop(self) -> None:
        """The stream is refused (every :class:`XmlStreamError` closes it): let go of everything
        held for it. No new expat parser is made and nothing more is parsed: :meth:`feed` returns
        no events from now on, so bytes still arriving from a refused client (the rest of a
        stanza nested 2,000 deep, say) cost nothing."""
        self._fed = self._parsed = self._stanza_start = self._idle_mark = 0
        self.discard()

    def _start(self, qname: str, attrs: dict[str, str]) -> None:
        if not self._opened:
            ns, local = _split_name(qname)
            self._opened = True
            self._idle_mark = self.parser.CurrentByteIndex
            self._events.append(StreamOpened(ns, local, {_attr_name(k): v for k, v in attrs.items()}))
            return
        stack = self._stack
        if len(stack) >= self.max_depth:
            _too_deep(self.max_depth)
        budget = self.budget
        if stack:
            if budget is not None:
                budget.held += 1  # before the per-stanza check, so giving back stays exact
            self._counted()
            if budget is not None:
                if budget.held > budget.limit and self._count > budget.small:
                    budget.refused += 1
                    raise XmlStreamError(
                        "resource-constraint", "too many elements held in unfinished stanzas; try again"
                    )
            el = self._element(qname, attrs)
            stack[-1].children.append(el)
        else:
            self._count = 1
            if budget is not None:
                budget.held += 1
            self._stanza_start = self.parser.CurrentByteIndex
            el = self._element(qname, attrs)
        stack.append(el)

    def _end(self, qname: str) -> None:
        if not self._stack:
            self._events.append(StreamClosed())
            return
        el = self._stack.pop()
        if not self._stack:
            self._give_back()
            end = self.parser.CurrentByteIndex
            if end - self._stanza_start > self.max_size:
                raise XmlStreamError("policy-violation", f"stanza larger than {self.max_size} bytes")
            self._idle_mark = end
            self._events.append(el)

    def _chars(self, data: str) -> None:
        if self._stack:
            self._stack[-1].children.append(data)
        else:
            # whitespace between stanzas (keep-alives) is ignored, and is not pending input
            self._idle_mark = self.parser.CurrentByteIndex


class _DocumentParser(_Builder):
    def __init__(
        self, max_size: int, max_depth: int = DEFAULT_MAX_DEPTH, max_elements: int = DEFAULT_MAX_ELEMENTS
    ) -> None:
        self._stack: list[Element] = []
        self.root: Element | None = None
        super().__init__(max_size, max_depth, max_elements)

    def _start(self, qname: str, attrs: dict[str, str]) -> None:
        if len(self._stack) >= self.max_depth:
            _too_deep(self.max_depth)
        self._counted()
        el = self._element(qname, attrs)
        if self._stack:
            self._stack[-1].children.append(el)
        self._stack.append(el)

    def _end(self, qname: str) -> None:
        el = self._stack.pop()
        if not self._stack:
            self.root = el

    def _chars(self, data: str) -> None:
        if self._stack:
            self._stack[-1].children.append(data)


def parse_document(
    data: bytes | str,
    max_size: int = 262144,
    default_ns: str = "",
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Element:
    """Parse one complete XML document (a WebSocket frame, a BOSH body) with the same hardening.

    ``default_ns`` fills in elements that declared no namespace (WebSocket clients that omit
    ``xmlns='jabber:client'`` on stanzas). ``max_depth`` counts the document element as 1.
    """
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > max_size:
        raise XmlStreamError("policy-violation", f"stanza larger than {max_size} bytes")
    doc = _DocumentParser(max_size, max_depth, max_elements)
    try:
        doc.parser.Parse(raw, True)
    except pyexpat.ExpatError as exc:
        raise XmlStreamError("not-well-formed", str(exc)) from None
    finally:
        # break the parser <-> handlers cycle so the tree is freed by reference counting, now
        doc._stack = []
        del doc.parser
    if doc.root is None:
        raise XmlStreamError("not-well-formed", "no element")
    if default_ns and not doc.root.ns:
        _fill_ns(doc.root, default_ns)
    return doc.root


def _fill_ns(root: Element, ns: str) -> None:
    todo = [root]  # iterative: depth is bounded by the parser, but never trust a recursion
    while todo:
        el = todo.pop()
        if el.ns:
            continue
        el.ns = ns
        todo.extend(c for c in el.children if isinstance(c, Element))
