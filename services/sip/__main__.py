"""``python -m services.sip [--config FILE]``: Parley's SIP gateway (SIP and MSRP into meetings)."""

from __future__ import annotations

import argparse

from services.common.config import load_or_exit
from services.common.logging import setup_logging
from services.common.runtime import run

from . import app, config


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.sip", description=__doc__)
    parser.add_argument("--config", help="HOCON file overriding reference.conf (or $SIP_CONFIG)")
    args = parser.parse_args()
    setup_logging("sip")
    settings = load_or_exit(lambda: config.load(args.config), "sip")
    run(lambda: app.main(settings))


if __name__ == "__main__":
    main()
