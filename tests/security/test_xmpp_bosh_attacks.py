"""Malformed BOSH (``/http-bind`` through nginx): ``wait='nan'``, junk ``hold`` and ``rid``, a body
nested too deep, a body too large. Each gets a clear BOSH error (never a 5xx, never a traceback in
the log) and a well-behaved BOSH session keeps working."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.security.conftest import tracebacks

BOSH = "http://jabber.org/protocol/httpbind"


def create(url: str, **attrs: str) -> httpx.Response:
    base = {"rid": "100", "to": "meet.jitsi", "wait": "5", "hold": "1", "ver": "1.6"}
    base.update(attrs)
    a = " ".join(f"{k}='{v}'" for k, v in base.items())
    body = f"<body xmlns='{BOSH}' {a} xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
    return httpx.post(url, content=body, timeout=20)


@pytest.mark.parametrize(
    "attrs",
    [
        {"wait": "nan"},
        {"wait": "inf"},
        {"wait": "-1e309"},
        {"hold": "x"},
        {"hold": "nan"},
        {"wait": "1" * 5000},
    ],
)
def test_junk_numbers_get_a_working_session_with_bounded_values(stack, attrs):
    before = tracebacks(stack.log())
    r = create(f"{stack.front}/http-bind", **attrs)
    assert r.status_code == 200, r.text
    wait = float(re.search(r"wait='([^']+)'", r.text).group(1))  # type: ignore[union-attr]
    hold = int(re.search(r"hold='([^']+)'", r.text).group(1))  # type: ignore[union-attr]
    assert 1 <= wait <= 60 and hold == 1 and "ANONYMOUS" in r.text
    assert tracebacks(stack.log()) == before


@pytest.mark.parametrize(
    "body, status",
    [
        (f"<body xmlns='{BOSH}' rid='x1' to='meet.jitsi'/>", 400),
        (f"<body xmlns='{BOSH}' rid='{'9' * 5000}' to='meet.jitsi'/>", 400),
        (f"<body xmlns='{BOSH}' rid='1' sid='nope'/>", 200),
        (f"<body xmlns='{BOSH}' rid='1'>" + "<a>" * 2000 + "</a>" * 2000 + "</body>", 400),
        (f"<body xmlns='{BOSH}' rid='1'><message>" + "<a/>" * 20000 + "</message></body>", 400),
        ("<body xmlns='" + BOSH + "' rid='1'><unclosed></body>", 400),
    ],
)
def test_malformed_bodies_get_a_bosh_error_not_a_server_error(stack, body, status):
    before = tracebacks(stack.log())
    r = httpx.post(f"{stack.front}/http-bind", content=body, timeout=20)
    assert r.status_code == status, r.text[:300]
    assert "type='terminate'" in r.text
    assert tracebacks(stack.log()) == before


def test_a_body_larger_than_nginx_allows_is_refused_at_the_door(stack):
    r = httpx.post(f"{stack.front}/http-bind", content=b"<body>" + b"x" * (600 << 10), timeout=20)
    assert r.status_code == 413
    assert create(f"{stack.front}/http-bind").status_code == 200  # the next client is served
