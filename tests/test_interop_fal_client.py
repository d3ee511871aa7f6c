"""GW-INTEROP: the official ``fal-client`` package talks to the gateway over TLS (SPEC §2, §5).

The gateway serves ``https``/``wss`` with a certificate from a throwaway CA made
here by ``trustme``. fal_client is pointed at it by patching its two module
constants (``REALTIME_URL_FORMAT`` is computed from ``FAL_RUN_HOST`` at import
time, ``REST_URL`` is fixed), and made to trust the CA the way a user would:
``SSL_CERT_FILE`` names a PEM file holding it. Both of fal_client's transports
honour that variable with verification left on: httpx's ``create_ssl_context``
loads ``cafile=$SSL_CERT_FILE``, and websockets' ``ssl.create_default_context()``
reaches OpenSSL's default verify paths, which read ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import fal_client
import fal_client.client
import httpx
import pytest
import trustme

from fal_realtime.server import Gateway, RunningGateway

from .conftest import KEY

#: Every fal_client call in these tests finishes well within this (seconds).
DEADLINE_S = 10.0


@pytest.fixture
async def tls_gateway(
    gateway: Gateway,
    ca: trustme.CA,
    ca_pem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningGateway]:
    """Serve ``gateway`` over TLS and point fal_client at it, trusting only the test CA."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    # As `fal-realtime serve --certfile` does: no TLS 1.3 session tickets. SyncClient's
    # websockets connection reads its SSL socket in a thread while the caller writes the
    # upgrade request; a ticket read meanwhile could lose that request (OpenSSL objects
    # are not thread-safe), and GW-INTEROP-4 then hung until the gateway's 10 s
    # handshake timeout: its flake under load.
    server_ctx.num_tickets = 0
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_pem))
    # httpx and websockets both read proxy variables; keep local traffic local.
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")
    async with gateway.serve("127.0.0.1", 0, ssl_context=server_ctx) as running:
        assert running.tls
        monkeypatch.setattr(
            fal_client.client, "REALTIME_URL_FORMAT", f"wss://127.0.0.1:{running.port}/"
        )
        monkeypatch.setattr(fal_client.client, "REST_URL", running.url)
        yield running


@pytest.fixture
async def fal_async(tls_gateway: RunningGateway) -> AsyncIterator[fal_client.AsyncClient]:
    """Return an async fal_client for KEY; its HTTP client is closed afterwards."""
    client = fal_client.AsyncClient(key=KEY)
    try:
        yield client
    finally:
        # fal_client has no public close; its cached httpx client owns the pooled sockets.
        await (await client._client).aclose()


async def test_gw_interop_1_fal_client_realtime_echo(
    fal_async: fal_client.AsyncClient, issued: list[list[str]]
) -> None:
    """GW-INTEROP-1: AsyncClient.realtime (JWT from POST /tokens/) echoes twice on one wss."""
    async with asyncio.timeout(DEADLINE_S), fal_async.realtime("fal-ai/echo") as conn:
        await conn.send({"prompt": "hi"})
        assert await conn.recv() == {"echo": {"prompt": "hi"}}
        await conn.send({"prompt": "again", "n": 2, "tags": ["a", "b"]})
        assert await conn.recv() == {"echo": {"prompt": "again", "n": 2, "tags": ["a", "b"]}}
    # fal_client fetched exactly one token, bound to the alias, from the gateway.
    assert issued == [["echo"]]


async def test_gw_interop_2_fal_client_realtime_key_header(
    fal_async: fal_client.AsyncClient, issued: list[list[str]]
) -> None:
    """GW-INTEROP-2: AsyncClient.realtime(use_jwt=False) authenticates with the Key header."""
    async with (
        asyncio.timeout(DEADLINE_S),
        fal_async.realtime("fal-ai/echo", use_jwt=False) as conn,
    ):
        await conn.send({"prompt": "hi"})
        assert await conn.recv() == {"echo": {"prompt": "hi"}}
        await conn.send({"prompt": "second"})
        assert await conn.recv() == {"echo": {"prompt": "second"}}
    assert issued == []


def _control(frame: str | bytes) -> dict[str, Any] | None:
    """Return ``frame`` as a start/end control frame (SPEC §2.2), else None (body)."""
    if not isinstance(frame, str):
        return None
    try:
        value = json.loads(frame)
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("type") in {"start", "end"} and "request_id" in value:
        return value
    return None


async def test_gw_interop_3_fal_client_ws_connect_any_llm(
    fal_async: fal_client.AsyncClient, issued: list[list[str]]
) -> None:
    """GW-INTEROP-3: AsyncClient.ws_connect gets start, body, end for an any-llm request."""
    async with asyncio.timeout(DEADLINE_S), fal_async.ws_connect("fal-ai/any-llm") as ws:
        query = parse_qs(urlsplit(str(ws.request.path)).query)
        assert len(query["fal_jwt_token"]) == 1
        await ws.send(json.dumps({"prompt": "Respond in 5 words."}))
        start = _control(await ws.recv())
        assert start is not None
        assert start["type"] == "start"
        assert start["status"] == 200
        assert start["headers"]["content-type"].startswith("application/json")
        body: list[str | bytes] = []
        while (end := _control(frame := await ws.recv())) is None:
            body.append(frame)
        assert end["type"] == "end"
        assert end["request_id"] == start["request_id"]
        assert end["status"] == 200
        assert isinstance(end["time_to_first_byte_seconds"], int | float)
    assert body, "a JSON answer has at least one body frame"
    text = "".join(f if isinstance(f, str) else f.decode() for f in body)
    result = json.loads(text)
    assert result["partial"] is False
    assert result["error"] is None
    assert len(result["output"].split()) == 5
    assert issued == [["any-llm"]]


async def test_gw_interop_4_fal_client_sync_realtime(
    tls_gateway: RunningGateway, issued: list[list[str]]
) -> None:
    """GW-INTEROP-4: SyncClient.realtime (in a thread) echoes twice over wss with a JWT."""

    def run() -> list[dict[str, Any] | None]:
        client = fal_client.SyncClient(key=KEY)
        try:
            with client.realtime("fal-ai/echo") as conn:
                conn.send({"prompt": "hi"})
                first = conn.recv()
                conn.send({"prompt": "again"})
                return [first, conn.recv()]
        finally:
            client._client.close()

    # Should the thread stall, the gateway's shutdown closes its socket and frees it.
    replies = await asyncio.wait_for(asyncio.to_thread(run), DEADLINE_S)
    assert replies == [{"echo": {"prompt": "hi"}}, {"echo": {"prompt": "again"}}]
    assert issued == [["echo"]]


async def test_gw_interop_5_fal_client_wrong_key_token_fetch_fails(
    tls_gateway: RunningGateway, issued: list[list[str]]
) -> None:
    """GW-INTEROP-5: with a wrong key fal_client's token fetch raises the 401, never hangs."""
    client = fal_client.AsyncClient(key="wrong-key-id:wrong-key-secret")
    try:
        with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
            async with asyncio.timeout(DEADLINE_S), client.realtime("fal-ai/echo"):
                pytest.fail("the realtime connection opened with a wrong key")
    finally:
        await (await client._client).aclose()
    error = caught.value
    assert error.status_code == 401
    assert isinstance(error.__cause__, httpx.HTTPStatusError)
    assert error.response.request.url.path == "/tokens/"
    assert "Authorization: Key" in str(error)
    assert "wrong-key-secret" not in str(error)
    assert issued == []
