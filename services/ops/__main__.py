"""``python -m services.ops``: the operator's tools for a running stack (``./parley ws``,
``./parley stats``, ``./parley console``). They read the services' private HTTP APIs, found
through ``run/stack.json`` (written by ``./parley up``) or the default ports shifted by
``--port-offset``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.common.ws_admin import ORDERS

from . import snapshot, ws
from .console import Console, take
from .stack import Api, OpsError, find_services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__)
    parser.add_argument("--run-dir", type=Path, help="the stack's run directory (default ./run)")
    parser.add_argument("--port-offset", type=int, help="find the services at the default ports plus this")
    sub = parser.add_subparsers(dest="tool", required=True)
    w = sub.add_parser("ws", help="WebSocket admin: Kamailio's ws.* commands on every WebSocket server")
    w.add_argument("command", choices=ws.COMMANDS)
    w.add_argument("args", nargs="*", help="ID [STATUS REASON] for close; ID for ping/pong")
    w.add_argument("--order", choices=ORDERS, help="ws dump order (default id_hash)")
    w.add_argument("--service", help="xmpp, bridge, sip, or one service's name (jvb2)")
    w.add_argument("--json", action="store_true", help="print the JSON answers")
    st = sub.add_parser("stats", help="one snapshot of the running stack")
    st.add_argument("--json", action="store_true")
    st.add_argument("--interval", type=float, default=1.0, help="seconds between the two readings (bitrates)")
    st.add_argument("--section", help="only this section (services, conferences, endpoints, bridges, ...)")
    sub.add_parser("console", help="interactive shell onto the running stack")
    args = parser.parse_args(argv)
    api = Api()
    try:
        services = find_services(args.run_dir, args.port_offset)
        if args.tool == "ws":
            text, result = ws.run(
                api, services, args.command, args.args, service=args.service, order=args.order
            )
            print(json.dumps(result, indent=1) if args.json else text)
        elif args.tool == "stats":
            snap = take(api, services, max(0.0, args.interval))
            print(json.dumps(snap, indent=1) if args.json else snapshot.render(snap, args.section))
        else:
            Console(api, services).cmdloop()
    except OpsError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
