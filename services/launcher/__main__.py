"""``python -m services.launcher up``: the whole Parley stack as local processes.

Starts the XMPP broker, two bridges (server ids jvb1, jvb2), the focus, the web service, coturn
(TURN/STUN on 3478) and Debian's nginx as the front door, then prints the URL to open. Settings come from flags and the same
environment variables the services read (PUBLIC_URL, REDIS_URL, XMPP_DOMAIN, JICOFO_AUTH_PASSWORD,
JVB_AUTH_PASSWORD, TURN_CREDENTIALS); service passwords and the TURN secret are generated per run
when unset.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from services.launcher.addresses import host_advertise_ips
from services.launcher.plan import AUTH_VARIABLES, REPO, StackSettings, build_plan
from services.launcher.supervisor import run_stack


def _port_range(value: str) -> tuple[int, int]:
    lo, _, hi = value.partition("-")
    return int(lo), int(hi or lo)


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> StackSettings:
    extra = {}
    if environ.get("JICOFO_AUTH_PASSWORD"):
        extra["focus_password"] = environ["JICOFO_AUTH_PASSWORD"]
    if environ.get("JVB_AUTH_PASSWORD"):
        extra["jvb_password"] = environ["JVB_AUTH_PASSWORD"]
    if environ.get("TURN_CREDENTIALS"):
        extra["turn_secret"] = environ["TURN_CREDENTIALS"]
    if environ.get("SIP_ACCOUNTS"):
        extra["sip_accounts"] = environ["SIP_ACCOUNTS"]
    return StackSettings(
        http_port=args.http_port,
        port_offset=args.port_offset,
        bridges=args.bridges,
        public_url=args.public_url or environ.get("PUBLIC_URL") or None,
        xmpp_domain=environ.get("XMPP_DOMAIN") or "meet.jitsi",
        redis_url=environ.get("REDIS_URL") or None,
        run_dir=Path(args.run_dir),
        nginx_binary=args.nginx,
        log_level=environ.get("LOG_LEVEL", "INFO"),
        # unset: the host's own addresses, then 127.0.0.1 (Firefox has no loopback candidate)
        advertise_ips=environ.get("JVB_ADVERTISE_IPS") or ",".join(host_advertise_ips()),
        turn=not args.no_turn,
        turn_relay_ports=_port_range(args.turn_relay_ports),
        auth={k: environ[k] for k in AUTH_VARIABLES if environ.get(k)},
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="parley", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start the stack and run until Ctrl-C"),
        ("plan", "print the processes, ports and nginx config, start nothing"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--http-port", type=int, default=8000, help="front door port (default 8000)")
        p.add_argument(
            "--port-offset",
            type=int,
            default=0,
            help="shift every port by this much, to run a second stack beside the first",
        )
        p.add_argument(
            "--bridges",
            type=int,
            default=2,
            choices=range(1, 10),
            metavar="N",
            help="number of bridges (default 2: jvb1, jvb2)",
        )
        p.add_argument("--public-url", help="URL users open (default http://localhost:<http-port>)")
        p.add_argument("--run-dir", default=str(REPO / "run"), help="where nginx config and state go")
        p.add_argument("--nginx", default="/usr/sbin/nginx", help="nginx binary")
        p.add_argument("--no-turn", action="store_true", help="do not start coturn (TURN/STUN)")
        p.add_argument(
            "--turn-relay-ports",
            default="49152-65535",
            help="UDP ports coturn relays from (default 49152-65535)",
        )
    args = parser.parse_args(argv)
    plan = build_plan(settings_from(args, dict(os.environ)))
    if args.command == "plan":
        for proc in plan.processes:
            print(
                f"{proc.name}: {' '.join(proc.argv)}  tcp={proc.tcp_ports} udp={proc.udp_ports} "
                f"health={proc.health_url}"
            )
        print(plan.nginx_config())
        return 0
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    return asyncio.run(run_stack(plan))


if __name__ == "__main__":
    sys.exit(main())
