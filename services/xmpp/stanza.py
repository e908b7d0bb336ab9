"""Stanza helpers: namespaces, error replies (RFC 6120 section 8.3), IQ results, stream errors."""

from __future__ import annotations

from .xml import CLIENT_NS, STREAM_NS, Element

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
SM_NS = "urn:xmpp:sm:3"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
PING_NS = "urn:xmpp:ping"
VERSION_NS = "jabber:iq:version"
ROSTER_NS = "jabber:iq:roster"
DATA_FORMS = "jabber:x:data"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_OWNER = MUC + "#owner"
MUC_ADMIN = MUC + "#admin"

STANZA_KINDS = frozenset({"message", "presence", "iq"})

# default error type for each condition (RFC 6120 section 8.3.3)
_ERROR_TYPE = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "undefined-condition": "cancel",
    "internal-server-error": "cancel",
}


def error_reply(
    stanza: Element, condition: str, text: str | None = None, error_type: str | None = None
) -> Element | None:
    """The error answer to ``stanza`` (addresses swapped, payload kept), or None for an error.

    Errors are never answered with errors (RFC 6120 section 8.3.1).
    """
    if stanza.get("type") == "error":
        return None
    attrs = {"type": "error"}
    if "id" in stanza.attrs:
        attrs["id"] = stanza.attrs["id"]
    if "from" in stanza.attrs:
        attrs["to"] = stanza.attrs["from"]
    if "to" in stanza.attrs:
        attrs["from"] = stanza.attrs["to"]
    reply = Element(  # an IQ error carries only the request's payload element
        stanza.name,
        CLIENT_NS,
        attrs,
        list[Element | str](stanza.children)
        if stanza.name != "iq"
        else list[Element | str](list(stanza.elements())[:1]),
    )
    err = reply.sub("error", CLIENT_NS, {"type": error_type or _ERROR_TYPE.get(condition, "cancel")})
    err.sub(condition, STANZAS_NS)
    if text:
        err.sub("text", STANZAS_NS, text=text)
    return reply


def iq_result(iq: Element, payload: Element | None = None) -> Element:
    attrs = {"type": "result", "id": iq.attrs.get("id", "")}
    if "from" in iq.attrs:
        attrs["to"] = iq.attrs["from"]
    if "to" in iq.attrs:
        attrs["from"] = iq.attrs["to"]
    return Element("iq", CLIENT_NS, attrs, [payload] if payload is not None else [])


def stream_error(condition: str, text: str | None = None) -> Element:
    err = Element("error", STREAM_NS)
    err.sub(condition, STREAMS_NS)
    if text:
        err.sub("text", STREAMS_NS, text=text)
    return err


def error_condition(stanza: Element) -> str | None:
    err = stanza.find("error")
    if err is None:
        return None
    for c in err.elements():
        if c.ns == STANZAS_NS and c.name != "text":
            return c.name
    return None
