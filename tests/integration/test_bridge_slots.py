"""Bridge replicas started together (``docker compose up --scale bridge=N``) each take their own
port slot: the claim is atomic (services/bridge/config.py:claim_ports), not a bind-and-release
check that every replica passes at once."""

from __future__ import annotations

import multiprocessing as mp

from tests.integration.harness import free_block

SLOTS = 6
REPLICAS = 5


def _replica(env: dict[str, str], go, done, out) -> None:  # type: ignore[no-untyped-def]
    from services.bridge import config

    go.wait()  # every replica resolves its slot at the same moment
    cfg = config.load(environ=env)
    out.put((cfg.udp_port, cfg.private_port, cfg.public_port, cfg.server_id))
    done.wait()  # hold the claim like a running bridge until everyone has chosen


def test_replicas_started_together_take_distinct_slots() -> None:
    base = free_block(3 * SLOTS, 20000)
    env = {
        "JVB_PORT": f"{base}-{base + SLOTS - 1}",
        "JVB_COLIBRI_PORT": f"{base + SLOTS}-{base + 2 * SLOTS - 1}",
        "JVB_PUBLIC_PORT": f"{base + 2 * SLOTS}-{base + 3 * SLOTS - 1}",
    }
    # spawned, not forked: the test process has threads by now (browser drivers, podman clients),
    # and a forked child can inherit one of their locks held and wait on it forever
    ctx = mp.get_context("spawn")
    go, done, out = ctx.Barrier(REPLICAS), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_replica, args=(env, go, done, out)) for _ in range(REPLICAS)]
    for p in procs:
        p.start()
    try:
        chosen = [out.get(timeout=60) for _ in procs]
    finally:
        done.set()
        for p in procs:
            p.join(30)
    assert len({c[0] for c in chosen}) == REPLICAS, chosen
    assert len({c[3] for c in chosen}) == REPLICAS, chosen
    assert sorted(c[0] - base for c in chosen) == list(range(REPLICAS))  # the first free slots
    # and once they are gone, slot 0 is free again
    from services.bridge import config

    assert config.load(environ=env).udp_port == base
