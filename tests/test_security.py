"""SEC: keys stay secret, TLS stays verified, limits hold (SPEC §6, issue 'reliability')."""

from __future__ import annotations

import ast
import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from aiohttp import web

import fal_realtime
from fal_realtime import RealtimeError
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import register_demo_apps

from .conftest import KEY, MS
from .gateway_tools import eventually, http_ws_request, joined

WAIT = 5000 * MS
ROOT = Path(__file__).resolve().parent.parent


async def test_sec_1_secrets_never_reach_logs_reprs_or_errors(
    gateway: Gateway, running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """SEC-1: at DEBUG, no key or token appears in any log line, repr or error message."""
    issued: list[str] = []
    issue = gateway.tokens.issue

    def recording(*args: Any, **kwargs: Any) -> str:
        token = issue(*args, **kwargs)
        issued.append(token)
        return token

    gateway.tokens.issue = recording  # type: ignore[method-assign]
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        # The realtime client: a refused-once reconnect, a handler error, a bad key.
        gateway.set_faults("fal-ai/echo", "refuse_auth=1;connections=1")
        errors: list[RealtimeError] = []
        async with await fal_realtime.connect(
            "fal-ai/echo", base_url=running.ws_url, key=KEY, on_error=errors.append
        ) as conn:
            shown += [repr(conn), repr(conn.stats)]
            await conn.send({"prompt": None})
        for bad in ("fal-ai/echo", "fal-ai/flux-lora-realtime"):
            with pytest.raises(RealtimeError) as info:
                await fal_realtime.connect(bad, base_url=running.ws_url, key=KEY + "-wrong")
            shown += [str(info.value), repr(info.value)]
        # The HTTP-over-WS client, refused and accepted.
        with pytest.raises(RealtimeError) as info:
            async with fal_realtime.ws("fal-ai/echo", base_url=running.ws_url, key="x:y"):
                pass
        shown += [str(info.value)]
        async with fal_realtime.ws("fal-ai/echo", base_url=running.ws_url, key=KEY) as ws_conn:
            shown.append(repr(ws_conn))
            await ws_conn.request({"a": 1})
    text = "\n".join(shown + [r.getMessage() for r in caplog.records] + [str(e) for e in errors])
    assert issued, "the test must have seen tokens to look for"
    for secret in [KEY, KEY.split(":")[1], *issued]:
        assert secret not in text


def _ca_and_context(tmp_path: Path) -> tuple[trustme.CA, ssl.SSLContext]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    return ca, server_context


async def test_sec_2_tls_is_verified_unless_the_user_trusts_the_ca(tmp_path: Path) -> None:
    """SEC-2: a self-signed gateway is refused by both clients unless given a trusting context."""
    ca, server_context = _ca_and_context(tmp_path)
    gateway = Gateway(keys=[KEY], heartbeat_s=None)
    register_demo_apps(gateway)
    async with gateway.serve(port=0, ssl_context=server_context) as running:
        base = f"wss://127.0.0.1:{running.port}"
        with pytest.raises(RealtimeError, match="not trusted") as info:
            await fal_realtime.connect("fal-ai/echo", base_url=base, key=KEY, use_jwt=False)
        assert info.value.code == "CONNECTION_LOST"
        with pytest.raises(RealtimeError, match="not trusted"):
            async with fal_realtime.ws("fal-ai/echo", base_url=base, key=KEY):
                pass
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        results: list[Any] = []
        async with await fal_realtime.connect(
            "fal-ai/echo",
            base_url=base,
            key=KEY,
            use_jwt=False,
            ssl_context=trusted,
            on_result=results.append,
        ) as conn:
            await conn.send({"tls": 1})
            await eventually(lambda: results)
        async with fal_realtime.ws(
            "fal-ai/echo", base_url=base, key=KEY, ssl_context=trusted
        ) as ws_conn:
            assert (await ws_conn.request({"tls": 2})).json() == {"echo": {"tls": 2}}
    assert results == [{"echo": {"tls": 1}}]


async def test_sec_3_incoming_frames_over_the_client_limit_are_refused(
    gateway: Gateway, running: RunningGateway
) -> None:
    """SEC-3: a result bigger than the client's max_frame_bytes: INVALID_INPUT, conn recovers."""

    async def big(value: dict[str, Any]) -> dict[str, Any]:
        return {"blob": b"x" * value["size"]}

    gateway.add_realtime("test/big", big)
    errors: list[RealtimeError] = []
    results: list[Any] = []
    async with await fal_realtime.connect(
        "test/big",
        base_url=running.ws_url,
        key=KEY,
        max_frame_bytes=4096,
        throttle_interval=0,
        on_error=errors.append,
        on_result=results.append,
    ) as conn:
        await conn.send({"size": 10_000})
        await eventually(lambda: errors)
        assert errors[0].code == "INVALID_INPUT" and "1009" in errors[0].message
        await conn.send({"size": 10})
        await eventually(lambda: results)
    assert results == [{"blob": b"x" * 10}]


async def test_sec_4_connections_per_key_are_capped(http: aiohttp.ClientSession) -> None:
    """SEC-4: past max_connections_per_key a handshake gets 429; a freed slot is reusable."""
    gateway = Gateway(keys=[KEY], max_connections_per_key=2, heartbeat_s=None)
    register_demo_apps(gateway)
    headers = {"Authorization": f"Key {KEY}"}
    async with gateway.serve(port=0) as running:
        url = f"{running.ws_url}/fal-ai/echo/realtime"
        first = await http.ws_connect(url, headers=headers)
        second = await http.ws_connect(f"{running.ws_url}/fal-ai/echo", headers=headers)
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(url, headers=headers)
        assert info.value.status == 429
        await first.close()
        await eventually(lambda: sum(gateway._live.values()) == 1)
        third = await http.ws_connect(url, headers=headers)
        await third.close()
        await second.close()


async def test_sec_5_slow_handshakes_time_out_and_others_are_served() -> None:
    """SEC-5: sockets that never finish a request are dropped; a real client still gets in."""
    gateway = Gateway(keys=[KEY], handshake_timeout_s=200 * MS, heartbeat_s=None)
    register_demo_apps(gateway)
    async with gateway.serve(port=0) as running:
        idle = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection(running.host, running.port)
            writer.write(b"GET /fal-ai/echo/realtime HTTP/1.1\r\nHost: x\r\n")  # never ends
            idle.append((reader, writer))
        async with fal_realtime.ws("fal-ai/echo", base_url=running.ws_url, key=KEY) as conn:
            assert (await conn.request({"ok": 1})).status == 200
        for reader, _ in idle:
            async with asyncio.timeout(WAIT):
                assert await reader.read() == b""  # closed by the gateway
        for _, writer in idle:
            writer.close()
        assert gateway.idle_handshakes_dropped == 20


async def test_sec_6_request_bodies_forwarded_upstream_are_capped(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """SEC-6: an HTTP-over-WS payload over the app's max_body_bytes gets 413, never forwarded."""
    forwarded: list[int] = []

    async def upstream(request: web.Request) -> web.StreamResponse:
        forwarded.append(len(await request.read()))
        return web.json_response({"ok": True})

    gateway.http_app("test/small", upstream=upstream, max_body_bytes=1000)
    ws = await http.ws_connect(
        f"{running.ws_url}/test/small", headers={"Authorization": f"Key {KEY}"}
    )
    await ws.send_str(orjson.dumps({"big": "x" * 5000}).decode())
    start, body, _ = await http_ws_request(ws)
    assert start["status"] == 413 and "exceeds" in orjson.loads(joined(body))["detail"]
    await ws.send_str('{"small": 1}')
    start, _, _ = await http_ws_request(ws)
    await ws.close()
    assert start["status"] == 200 and forwarded == [12]


async def test_sec_7_huge_headers_are_refused_and_the_gateway_stays_up(
    running: RunningGateway,
) -> None:
    """SEC-7: a 100 KB header line is refused (4xx) and later clients are served."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(b"GET /fal-ai/echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    async with asyncio.timeout(WAIT):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1].startswith(b"4"), status_line
    async with fal_realtime.ws("fal-ai/echo", base_url=running.ws_url, key=KEY) as conn:
        assert (await conn.request({"after": 1})).status == 200


def test_sec_8_secrets_are_compared_in_constant_time() -> None:
    """SEC-8: key and token checks use hmac.compare_digest, never == on secret material."""
    for name in ("tokens.py", "auth.py"):
        tree = ast.parse((ROOT / "fal_realtime" / "server" / name).read_text())
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "compare_digest"
        ]
        assert calls, f"{name} compares secrets without hmac.compare_digest"
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                assert not names & {"signature", "expected", "digest", "accepted", "key"}, (
                    f"{name}:{node.lineno} compares secret material with =="
                )
