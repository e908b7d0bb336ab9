"""A guest that joins a meeting and never connects its media must not make every sender encode
its top layer. A receiver that has not sent ``ReceiverVideoConstraints`` is unlimited, and the
bridge tells each sender the largest height any receiver wants (``SenderSourceConstraints``): an
occupant whose transport never comes up (a guest in the room that never answers the focus's
invitation) kept every page encoding 720p for nobody, about a third more CPU in each page's
renderer (``bench/abuse.py``, ``presence``). Now a receiver counts for the senders only once its
DTLS is done. The bridge process and the light WebRTC peers of
``tests/integration/test_bridge_intelligence_simulcast.py`` (real ICE, DTLS, SRTP, VP8).
"""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.test_bridge_intelligence import messages_to
from tests.integration.test_bridge_intelligence_simulcast import (  # noqa: F401 (fixtures)
    CONFERENCE,
    VP8_PT,
    bridge,
    call,
    layers,
    wait_for,
)


async def test_an_occupant_that_never_connects_does_not_raise_the_senders_layers(call, bridge) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    sender, receiver, _ssrcs, decoder = call

    async def sender_max() -> int | None:
        said = await messages_to(sender, "SenderSourceConstraints")  # type: ignore[arg-type]
        return said[-1]["maxHeight"] if said else None

    async def low_layer_only() -> bool:
        return await sender_max() == 180 and any(h == 180 for _, _, h in decoder.sizes)

    await wait_for(low_layer_only, 20, "the sender told to send 180 lines only")
    url = f"{bridge.control_url}/conferences/{CONFERENCE}/endpoints/silent"
    payload_types = [{"id": VP8_PT, "name": "VP8", "clockrate": 90000, "rtcp_fbs": [["nack", "pli"]]}]
    async with httpx.AsyncClient(timeout=10) as http:
        (await http.post(url)).raise_for_status()  # allocated, as the focus does for a joiner
        (await http.put(f"{url}/sources", json={"payload_types": payload_types})).raise_for_status()
        # the receiver says its constraints again: the bridge recomputes the senders' constraints
        await receiver.say(
            http, {"colibriClass": "ReceiverVideoConstraints", "defaultConstraints": {"maxHeight": 180}}
        )
        await asyncio.sleep(3)  # a few allocation ticks
        said = await messages_to(sender, "SenderSourceConstraints")  # type: ignore[arg-type]
    assert [m["maxHeight"] for m in said][-1] == 180, said
    assert all(m["maxHeight"] != -1 for m in said[1:]), said  # never unlimited for the silent one
