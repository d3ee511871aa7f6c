"""The pytest plugin (entry point ``pytest11``): the ``fal_gateway`` fixture.

Installing ``fal-realtime`` is enough to have it. The plugin adds this one fixture and
nothing else (no options, no autouse fixtures, no hooks), so projects that do not ask
for ``fal_gateway`` see no change; the gateway is imported only when a test asks.

    def test_my_app(fal_gateway):
        fal_gateway.replay("fal-ai/flux-lora-realtime", "tests/data/flux.jsonl", speed=0)
        ...  # code that calls fal_realtime.connect(...) / ws(...) reaches it unmodified
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import LocalGateway

__all__ = ["fal_gateway"]


@pytest.fixture
def fal_gateway() -> Iterator[LocalGateway]:
    """Run a local gateway with the demo apps for this test; point FAL_* at it meanwhile.

    A plain (sync) fixture: the gateway runs on its own loop in a thread, so it serves
    sync tests and pytest-asyncio tests alike, in strict or auto mode, whatever the loop
    scope (:mod:`fal_realtime.testing` says why).
    """
    from .testing import LocalGateway

    with LocalGateway() as gateway:
        yield gateway
