"""Where the running stack's services are, and the I/O to their private HTTP APIs.

``./parley up`` writes ``run/stack.json`` (``services/launcher/plan.py``: each service's name, kind
and private API). Without it (a stack started otherwise) the default plan's ports are used,
shifted by ``--port-offset``. Every read here is one HTTP GET to a loopback API; commands are
POSTs to ``/admin/ws/...``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.launcher.plan import REPO, STATE_FILE, StackSettings, build_plan, stack_state

WS_KINDS = ("xmpp", "bridge", "sip")
"""Services with a WebSocket server administered by services/common/ws_admin.py."""


@dataclass(frozen=True)
class Service:
    name: str
    kind: str
    api: str

    @property
    def has_ws(self) -> bool:
        return self.kind in WS_KINDS


class OpsError(Exception):
    """A problem to show the operator in one line."""


def find_services(run_dir: Path | None = None, port_offset: int | None = None) -> list[Service]:
    """The stack's services: from ``<run_dir>/stack.json``, else from the default plan."""
    state_path = (run_dir or REPO / "run") / STATE_FILE
    if port_offset is None and state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
            return [Service(str(s["name"]), str(s["kind"]), str(s["api"])) for s in state["services"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise OpsError(f"{state_path} is not a stack description: {exc}") from None
    plan = build_plan(StackSettings(port_offset=port_offset or 0, focus_password="-", jvb_password="-"))
    services = stack_state(plan)["services"]
    assert isinstance(services, list)
    return [Service(s["name"], s["kind"], s["api"]) for s in services]


def select(services: list[Service], wanted: str | None, ws_only: bool = False) -> list[Service]:
    """Services by kind (``bridge``) or name (``jvb2``); all (with a WebSocket server) when None."""
    pool = [s for s in services if s.has_ws] if ws_only else services
    if wanted is None:
        return pool
    chosen = [s for s in pool if wanted in (s.kind, s.name)]
    if not chosen:
        names = ", ".join(sorted({s.kind for s in pool} | {s.name for s in pool}))
        raise OpsError(f"no service {wanted!r} in this stack (there are: {names})")
    return chosen


class Api:
    """GETs and POSTs to the services' private APIs (loopback; the broker's admin token from
    ``$XMPP_ADMIN_TOKEN`` when one is set)."""

    def __init__(self, timeout: float = 5.0) -> None:
        headers = {}
        token = os.environ.get("XMPP_ADMIN_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def get(self, service: Service, path: str, **params: str) -> Any:
        return self._call("GET", service, path, params=params or None)

    def post(self, service: Service, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", service, path, json=body)

    def try_get(self, service: Service, path: str) -> Any:
        """The answer, or ``{"error": ...}`` (a snapshot shows what it could not read)."""
        try:
            return self.get(service, path)
        except OpsError as exc:
            return {"error": str(exc)}

    def _call(self, method: str, service: Service, path: str, **kwargs: Any) -> Any:
        url = service.api + path
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise OpsError(f"{service.name}: cannot reach {url}: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": response.text[:200]}
        if response.status_code >= 400:
            detail = answer.get("error") if isinstance(answer, dict) else answer
            raise OpsError(f"{service.name}: {response.status_code} {detail}")
        return answer
