"""``python -m services.bridge [--config FILE]``: run one videobridge."""

from __future__ import annotations

import argparse
import os

from services.bridge import config as bridge_config
from services.common.config import load_or_exit
from services.common.logging import setup_logging
from services.common.runtime import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.bridge", description=__doc__)
    parser.add_argument("--config", help="HOCON file overriding services/bridge/reference.conf ($JVB_CONFIG)")
    args = parser.parse_args()
    raw = load_or_exit(lambda: bridge_config.read(args.config), "bridge")
    cfg = load_or_exit(lambda: bridge_config.resolve(raw, os.environ), "bridge")
    ranged = any(first != last for first, last in bridge_config.port_ranges(raw.videobridge))
    setup_logging(cfg.server_id)

    from services.bridge.app import Bridge  # after logging is set up

    async def serve() -> None:
        await Bridge(cfg, state_file=bridge_config.STATE_FILE if ranged else None).run()

    run(serve)


if __name__ == "__main__":
    main()
