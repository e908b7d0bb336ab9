"""Root pytest configuration: only what every test directory needs.

CPython 3.11.7 keeps one AST-construction depth counter per interpreter (gh-106905). If an
``ast.parse`` runs while another is half way through building its tree, the outer one ends with
"SystemError: AST constructor recursion depth mismatch". pytest parses source to report a failure,
its assertion rewriter parses plugin modules imported late, and Python 3.11's traceback module
parses a line to draw its ``^^^`` markers. So a garbage collection inside one of pytest's parses
that runs a ``__del__`` which raises makes the unraisable-exception hook format a traceback, a
nested parse: the failing test's report then raises INTERNALERROR and the whole run stops.

slixmpp's ``XMLStream.__del__`` is such a finaliser: it cancels a task on its event loop, and a
test's client is often collected after that loop has closed (RuntimeError "Event loop is closed").
Nothing is left to cancel then, so the error is dropped here instead of reaching the hook.
Hypothesis's summary module is also imported now, at collection, not parsed at the summary.
"""

import hypothesis.internal.observability  # noqa: F401
from slixmpp.xmlstream.xmlstream import XMLStream

_slixmpp_del = XMLStream.__del__


def _quiet_del(self: XMLStream) -> None:
    try:
        _slixmpp_del(self)
    except RuntimeError:  # its event loop is already closed: no task can be pending on it
        pass


XMLStream.__del__ = _quiet_del  # type: ignore[method-assign]
