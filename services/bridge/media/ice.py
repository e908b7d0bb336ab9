"""ICE-lite responder for one endpoint (RFC 8445 section 2.5, consent freshness RFC 7675).

The bridge never sends connectivity checks: it answers authenticated binding requests, takes the
address of the nominated (``USE-CANDIDATE``) check — or the first valid one, as ICE-lite
may — as the endpoint's address, and counts every valid request as consent.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from . import aiortc_adapter as adapter

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class StunOutcome:
    """What to do with one binding request: send ``response``; ``address_selected`` is true when
    the request moved the endpoint's media address (first check or a nominated one)."""

    response: bytes | None
    authenticated: bool
    address_selected: bool


class IceLiteAgent:
    """Credentials and the selected address of one endpoint."""

    def __init__(self, ufrag: str | None = None, pwd: str | None = None) -> None:
        self.local_ufrag = ufrag or random_token(8)
        self.local_pwd = pwd or random_token(24)
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None
        self.selected: tuple[str, int] | None = None
        self.nominated = False
        self.checks = 0

    def set_remote(self, ufrag: str, pwd: str) -> None:
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd

    def handle(self, request: adapter.StunBindingRequest, addr: tuple[str, int]) -> StunOutcome:
        if request.local_ufrag != self.local_ufrag:
            return StunOutcome(adapter.binding_error(request, 401, "Unauthorized"), False, False)
        if self.remote_ufrag is not None and request.remote_ufrag != self.remote_ufrag:
            return StunOutcome(adapter.binding_error(request, 401, "Unauthorized"), False, False)
        if not adapter.verify_integrity(request, self.local_pwd):
            return StunOutcome(adapter.binding_error(request, 401, "Unauthorized"), False, False)
        self.checks += 1
        moved = False
        if request.use_candidate and (not self.nominated or self.selected != addr):
            self.nominated = True
            moved = self.selected != addr
            self.selected = addr
        elif self.selected is None:
            self.selected = addr
            moved = True
        return StunOutcome(adapter.binding_success(request, addr, self.local_pwd), True, moved)
