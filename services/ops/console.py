"""``parley console``: an interactive shell onto a running stack (``cmd`` with readline
completion and ``help``). Every command reads the services' private APIs afresh, except that
bitrates need two readings: ``endpoints`` takes a second one a second after the first."""

from __future__ import annotations

import cmd
import json
import shlex
import time
from typing import Any

from services.common.ws_admin import ORDERS

from . import snapshot, ws
from .stack import Api, OpsError, Service, select


def collect(api: Api, services: list[Service]) -> snapshot.Raw:
    """One reading of every service's read-only endpoints (errors recorded, never raised)."""
    return {
        s.name: {path: api.try_get(s, path) for path in snapshot.PATHS.get(s.kind, ("/health",))}
        for s in services
    }


def take(api: Api, services: list[Service], interval: float = 0.0) -> dict[str, Any]:
    """A snapshot; with ``interval`` > 0, two readings that far apart (for bitrates)."""
    kinds = {s.name: s.kind for s in services}
    first = collect(api, services)
    if interval <= 0:
        return snapshot.summarize(kinds, first)
    started = time.monotonic()
    time.sleep(interval)
    second = collect(api, services)
    return snapshot.summarize(kinds, second, first, time.monotonic() - started)


class Console(cmd.Cmd):
    intro = "Parley console: 'help' lists the commands, Tab completes, Ctrl-D leaves."
    prompt = "parley> "

    def __init__(self, api: Api, services: list[Service], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api
        self.services = services
        self.last: dict[str, Any] | None = None

    # -- plumbing -------------------------------------------------------------------------------
    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> None:
        self.stdout.write(f"unknown command {line.split()[0]!r}: 'help' lists them\n")

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except OpsError as exc:
            self.stdout.write(f"error: {exc}\n")
        except ValueError as exc:
            self.stdout.write(f"error: {exc}\n")
        return False

    def _show(self, section: str, interval: float = 0.0) -> None:
        self.last = take(self.api, self.services, interval)
        self.stdout.write(snapshot.render(self.last, section) + "\n")

    def _names(self, text: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(text)]

    # -- commands -------------------------------------------------------------------------------
    def do_services(self, arg: str) -> None:
        """services: every service of the stack, its private API and whether it answers."""
        self._show("services")
        for s in self.services:
            self.stdout.write(f"  {s.name}: {s.kind} at {s.api}\n")

    def do_conferences(self, arg: str) -> None:
        """conferences: the focus's conferences (room, bridge, participants, moves)."""
        self._show("conferences")

    def do_endpoints(self, arg: str) -> None:
        """endpoints [CONFERENCE]: each bridge's endpoints, their streams and bitrates (two readings 1 s apart)."""
        self.last = take(self.api, self.services, 1.0)
        if arg.strip():
            wanted = arg.strip()
            self.last["endpoints"] = [
                e
                for e in self.last["endpoints"]
                if wanted in (e["conference"], e["conference_name"], e["room"])
            ]
        self.stdout.write(snapshot.render(self.last, "endpoints") + "\n")

    def complete_endpoints(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        snap = self.last or take(self.api, self.services)
        names = {e["room"] or e["conference"] for e in snap["endpoints"]}
        return self._names(text, sorted(names))

    def do_bridges(self, arg: str) -> None:
        """bridges: each bridge's conferences, participants, stress (load) and bitrates."""
        self._show("bridges")

    def do_sessions(self, arg: str) -> None:
        """sessions: the broker's client connections (TCP, WebSocket, BOSH) and bound JIDs."""
        self._show("sessions")

    def do_rooms(self, arg: str) -> None:
        """rooms: the broker's MUC rooms and their occupants."""
        self._show("rooms")

    def do_recorders(self, arg: str) -> None:
        """recorders: recorders known to the focus and their recordings."""
        self._show("recorders")

    def do_sip(self, arg: str) -> None:
        """sip: the SIP gateway's calls (when the stack has a gateway with a /calls API)."""
        self._show("sip")

    def do_stats(self, arg: str) -> None:
        """stats [json]: the whole snapshot, as text or JSON."""
        self.last = take(self.api, self.services, 1.0)
        if arg.strip() == "json":
            self.stdout.write(json.dumps(self.last, indent=1) + "\n")
        else:
            self.stdout.write(snapshot.render(self.last) + "\n")

    def do_ws(self, arg: str) -> None:
        """ws dump [id_hash|used_desc|used_asc] [SERVICE] | ws status [SERVICE] | ws close ID [STATUS REASON] [@SERVICE]
        | ws ping ID [@SERVICE] | ws pong ID [@SERVICE] | ws disable [SERVICE] | ws enable [SERVICE]:
        Kamailio's ws.* commands on the WebSocket servers (broker, bridges, SIP gateway)."""
        words = shlex.split(arg)
        if not words:
            raise OpsError("usage: ws dump|status|close|ping|pong|disable|enable ...")
        command, rest = words[0], words[1:]
        service = None
        at = [w for w in rest if w.startswith("@")]
        if at:
            service = at[0][1:]
            rest = [w for w in rest if not w.startswith("@")]
        order = None
        if command == "dump":
            order = next((w for w in rest if w in ORDERS), None)
            others = [w for w in rest if w not in ORDERS]
            service = service or (others[0] if others else None)
            rest = []
        elif command in ("status", "disable", "enable") and rest:
            service = service or rest[0]
            rest = []
        text, _ = ws.run(self.api, self.services, command, rest, service=service, order=order)
        self.stdout.write(text + "\n")

    def complete_ws(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        words = line.split()
        if len(words) <= 1 or (len(words) == 2 and not line.endswith(" ")):
            return self._names(text, list(ws.COMMANDS))
        names = [s.name for s in select(self.services, None, ws_only=True)]
        kinds = sorted({s.kind for s in select(self.services, None, ws_only=True)})
        if words[1] == "dump":
            return self._names(text, list(ORDERS) + names + kinds)
        if words[1] in ("close", "ping", "pong"):
            return self._names(text, [f"@{n}" for n in names + kinds])
        return self._names(text, names + kinds)

    def do_quit(self, arg: str) -> bool:
        """quit: leave the console (also Ctrl-D)."""
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:
        self.stdout.write("\n")
        return True
