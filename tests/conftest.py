"""Fixtures the integration and security suites share (pytest finds them here; no test module
imports another's fixtures).

``http``: an asynchronous client of the Colibri REST API (docs/protocols.md, "Colibri REST v1")
of the bridge the requesting module's ``bridge`` fixture started
(a :class:`~tests.integration.test_bridge_control_support.RunningBridge`): each module starts its
bridge with its own settings, the client is the same for all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.integration.test_bridge_control_support import RunningBridge


@pytest.fixture
async def http(bridge: RunningBridge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as client:
        yield client
