"""Shared fixtures: a real gateway on 127.0.0.1 port 0 and an aiohttp client session.

With ``FAL_RT_TEST_LOOP=uvloop`` every async test runs on uvloop (pytest-asyncio's
loop-factory hook), which is how the test matrix's ``uvloop`` session runs the suite.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
import trustme
from aiohttp import web

import fal_realtime
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import register_demo_apps
from fal_realtime.server.proxy import FaultProxy

if TYPE_CHECKING:
    from .callbacks import Recorder

#: One millisecond: tests express waits in multiples of it.
MS = 0.001
#: The key the test gateway accepts (never a real fal key).
KEY = "test-key-id:test-key-secret"
AUTH = {"Authorization": f"Key {KEY}"}


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """Make reconnect waits instant for the test (attempts are still counted)."""
    fal_realtime.set_testing(True)
    try:
        yield
    finally:
        fal_realtime.set_testing(False)


@pytest.fixture
def recorder() -> Recorder:
    """Return a recorder for one realtime connection's callbacks (``tests/callbacks.py``)."""
    from .callbacks import Recorder

    return Recorder()


@pytest.fixture
def gateway() -> Gateway:
    """Return a gateway that accepts KEY and hosts the demo apps."""
    gw = Gateway(keys=[KEY], heartbeat_s=None)
    register_demo_apps(gw)
    return gw


@pytest.fixture
def issued(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the ``allowed_apps`` of every token the gateway issues."""
    calls: list[list[str]] = []
    issue = gateway.tokens.issue

    def spy(allowed_apps: Sequence[str], lifetime_s: float, *, subject: str) -> str:
        calls.append(list(allowed_apps))
        return issue(allowed_apps, lifetime_s, subject=subject)

    monkeypatch.setattr(gateway.tokens, "issue", spy)
    return calls


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """Return a throwaway certificate authority for this module's TLS gateways."""
    return trustme.CA()


@pytest.fixture
def ca_pem(ca: trustme.CA, tmp_path: Path) -> Path:
    """Write the CA's certificate to a PEM file (for SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)."""
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def running(gateway: Gateway) -> AsyncIterator[RunningGateway]:
    """Serve ``gateway`` on a free port for the duration of the test."""
    async with gateway.serve(port=0) as served:
        yield served


@pytest.fixture
async def proxy(running: RunningGateway) -> AsyncIterator[FaultProxy]:
    """Put a fault proxy in front of the test gateway."""
    async with FaultProxy(running.host, running.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Return a plain aiohttp session (the raw client the gateway tests drive)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def slow_upstream(gateway: Gateway) -> asyncio.Event:
    """Host test/slow on the gateway: one chunk, then the rest once the event is set."""
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        await resp.write(b"first")
        await release.wait()
        await resp.write(b"-rest")
        return resp

    gateway.http_app("test/slow", upstream=handler)
    return release


if os.environ.get("FAL_RT_TEST_LOOP") == "uvloop":
    import uvloop

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        """Run every async test and fixture on uvloop (the matrix's ``uvloop`` session)."""
        return {"uvloop": uvloop.new_event_loop}
