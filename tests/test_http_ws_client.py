"""WS: the HTTP-over-WebSocket client against the gateway, over real sockets (SPEC §2.2, §3)."""

from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import fal_realtime
from fal_realtime import HttpWsConnection, RealtimeError
from fal_realtime.server import Gateway, RunningGateway

from .conftest import KEY, MS
from .gateway_tools import count_handshakes

WAIT = 5000 * MS
MIB = 1024 * 1024


def _client(running: RunningGateway, app: str, **kwargs: Any) -> HttpWsConnection:
    return fal_realtime.ws(app, base_url=running.ws_url, key=KEY, **kwargs)


@pytest.fixture
def api(gateway: Gateway) -> None:
    """Host test/api: binary, status, big and split-SSE endpoints (in-process)."""

    async def status(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return web.json_response({"detail": body.get("why", "no")}, status=body["status"])

    async def binary(request: web.Request) -> web.StreamResponse:
        size = (await request.json())["size"]
        return web.Response(body=bytes(i % 251 for i in range(size)))

    async def big(request: web.Request) -> web.StreamResponse:
        total = (await request.json())["bytes"]
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        chunk = b"\xab" * (64 * 1024)
        for _ in range(total // len(chunk)):
            await resp.write(chunk)
        return resp

    async def split_sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        stream = (
            'event: event\r\ndata: {"output": "caf\u00e9", "partial": true}\r\n\r\n'
            "id: 7\r\ndata: line one\r\ndata: line two\r\n\r\n"
            'event: event\ndata: {"output": "caf\u00e9 \u2615", "partial": false}\n\n'
        ).encode()
        # Cut inside CRLFs and inside multi-byte characters; each piece its own frame.
        for start in range(0, len(stream), 7):
            await resp.write(stream[start : start + 7])
            await asyncio.sleep(MS)
        return resp

    app = web.Application()
    app.router.add_post("/status", status)
    app.router.add_post("/binary", binary)
    app.router.add_post("/big", big)
    app.router.add_post("/split-sse", split_sse)
    gateway.http_app("test/api", upstream=app)


async def test_ws_1_request_returns_the_whole_response(running: RunningGateway) -> None:
    """WS-1: request() gives status, case-insensitive headers, id, JSON body, timings."""
    async with _client(running, "fal-ai/any-llm") as conn:
        response = await conn.request(
            {"prompt": "What is the meaning of life? Respond in 9 words."}
        )
    assert response.ok and response.status == 200
    assert response.headers["CONTENT-TYPE"].startswith("application/json")
    body = response.json()
    assert len(body["output"].split()) == 9 and body["partial"] is False
    assert response.text == response.content.decode()
    assert response.request_id == conn.last_start.request_id == conn.last_end.request_id  # type: ignore[union-attr]
    assert response.time_to_first_byte is not None and response.time_to_first_byte > 0
    assert response.server_time_to_first_byte is not None and response.elapsed > 0


async def test_ws_2_three_pipelined_requests_answer_in_order(running: RunningGateway) -> None:
    """WS-2: three sends before any read come back in order on one socket."""
    async with _client(running, "fal-ai/echo") as conn:
        for i in range(3):
            await conn.send({"i": i})
        assert conn.pending == 3
        bodies = [orjson.loads(await conn.recv()) for _ in range(3)]
        assert conn.pending == 0
    assert [b["echo"]["i"] for b in bodies] == [0, 1, 2]


async def test_ws_3_binary_and_text_bodies(running: RunningGateway, api: None) -> None:
    """WS-3: a binary body (not UTF-8) and a JSON text body both come back byte exact."""
    async with _client(running, "test/api", path="binary") as conn:
        await conn.send({"size": 300_000})
        assert await conn.recv() == bytes(i % 251 for i in range(300_000))
    async with _client(running, "fal-ai/echo") as conn:
        await conn.send({"text": "caf\u00e9 \u2615"})
        assert orjson.loads(await conn.recv()) == {"echo": {"text": "caf\u00e9 \u2615"}}


async def test_ws_4_sse_split_across_frames(running: RunningGateway, api: None) -> None:
    """WS-4: events() parses SSE cut inside CRLFs and multi-byte characters across frames."""
    async with _client(running, "test/api/split-sse") as conn:
        await conn.send({})
        events = [event async for event in conn.events()]
    assert events == [
        {"event": "event", "data": {"output": "caf\u00e9", "partial": True}, "id": None},
        {"event": "message", "data": "line one\nline two", "id": "7"},
        {"event": "event", "data": {"output": "caf\u00e9 \u2615", "partial": False}, "id": "7"},
    ]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "INVALID_INPUT"),
        (422, "INVALID_INPUT"),
        (429, "RATE_LIMITED"),
        (500, "INTERNAL_ERROR"),
    ],
)
async def test_ws_5_error_statuses_raise_with_status_body_and_id(
    running: RunningGateway, api: None, status: int, code: str
) -> None:
    """WS-5: recv() raises on 4xx/5xx with code, status, body, request_id; socket still usable."""
    async with _client(running, "test/api/status") as conn:
        await conn.send({"status": status, "why": "bad prompt"})
        with pytest.raises(RealtimeError) as info:
            await conn.recv()
        error = info.value
        assert (error.code, error.status) == (code, status)
        assert "bad prompt" in error.message and orjson.loads(error.body) == {
            "detail": "bad prompt"
        }
        assert error.request_id == conn.last_start.request_id  # type: ignore[union-attr]
        response = await conn.request({"status": status})
        assert response.status == status and not response.ok
        with pytest.raises(RealtimeError):
            response.raise_for_status()
        with pytest.raises(RealtimeError):
            await conn.send({"status": status})
            async for _ in conn.stream():
                pass


async def test_ws_6_upstream_down_is_502_then_same_socket_works(
    gateway: Gateway, running: RunningGateway
) -> None:
    """WS-6: upstream down -> INTERNAL_ERROR 502; a good request then works on the same socket."""
    handshakes = count_handshakes(gateway)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway.http_app("test/down", upstream=f"http://127.0.0.1:{port}")
    async with _client(running, "test/down") as conn:
        await conn.send({})
        with pytest.raises(RealtimeError) as info:
            await conn.recv()
        assert info.value.status == 502 and info.value.code == "INTERNAL_ERROR"

        async def up(request: web.Request) -> web.StreamResponse:
            return web.json_response({"up": True})

        app = web.Application()
        app.router.add_post("/", up)
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        try:
            await conn.send({})
            assert orjson.loads(await conn.recv()) == {"up": True}
        finally:
            await server.close()
    assert handshakes() == 1


async def test_ws_7_cancel_mid_stream_closes_socket_next_send_reconnects(
    gateway: Gateway, running: RunningGateway, slow_upstream: asyncio.Event
) -> None:
    """WS-7: cancelling a stream() mid-response closes that socket; the next send reconnects."""
    handshakes = count_handshakes(gateway)
    async with _client(running, "test/slow") as conn:
        await conn.send({})
        got_first = asyncio.Event()

        async def consume() -> None:
            async for _chunk in conn.stream():
                got_first.set()

        task = asyncio.create_task(consume())
        async with asyncio.timeout(WAIT):
            await got_first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        slow_upstream.set()
        await conn.send({"i": 2})
        assert await conn.recv() == b"first-rest"
    assert handshakes() == 2


async def test_ws_8_break_out_of_stream_then_keep_going(
    gateway: Gateway, running: RunningGateway
) -> None:
    """WS-8: leaving stream() with break: the next request on the socket still gets its answer."""
    handshakes = count_handshakes(gateway)
    async with _client(running, "fal-ai/any-llm/stream") as conn:
        await conn.send({"prompt": "Respond in 30 words."})
        async for _chunk in conn.stream():
            break
        await conn.send({"prompt": "Respond in 2 words."})
        last = [event["data"] async for event in conn.events()][-1]
        assert len(last["output"].split()) == 2 and last["partial"] is False
        # With nothing queued behind it, an abandoned response just costs the socket.
        await conn.send({"prompt": "Respond in 30 words."})
        async for _chunk in conn.stream():
            break
        with pytest.raises(RuntimeError, match="call send"):
            await conn.recv()
        await conn.send({"prompt": "Respond in 3 words."})
        body = orjson.loads(b"".join([c async for c in conn.stream()]).split(b"data: ")[-1])
        assert len(body["output"].split()) == 3
    assert handshakes() == 2


async def test_ws_9_drop_while_idle_reconnects_transparently(
    gateway: Gateway, running: RunningGateway
) -> None:
    """WS-9: the server drops an idle socket (no close frame): next send reconnects, no error."""
    handshakes = count_handshakes(gateway)
    gateway.set_faults("fal-ai/echo", "drop_after=3;connections=1")  # start, body, end, cut
    async with _client(running, "fal-ai/echo") as conn:
        await conn.send({"n": 1})
        assert orjson.loads(await conn.recv()) == {"echo": {"n": 1}}
        await asyncio.sleep(50 * MS)  # the cut arrives while idle
        await conn.send({"n": 2})
        assert orjson.loads(await conn.recv()) == {"echo": {"n": 2}}
    assert handshakes() == 2


async def test_ws_10_drop_mid_response_raises_and_never_resends(
    gateway: Gateway, running: RunningGateway
) -> None:
    """WS-10: a drop mid-response: CONNECTION_LOST for it and each pipelined one; none resent."""
    gateway.set_faults("fal-ai/echo", "drop_after=2;connections=1")  # start, body, cut
    async with _client(running, "fal-ai/echo") as conn:
        for i in range(3):
            await conn.send({"i": i})
        for _ in range(3):
            with pytest.raises(fal_realtime.ConnectionLostError):
                await conn.recv()
        assert conn.pending == 0
        await conn.send({"after": True})
        assert orjson.loads(await conn.recv()) == {"echo": {"after": True}}


async def test_ws_11_large_body_streams_in_bounded_memory(
    running: RunningGateway, api: None
) -> None:
    """WS-11: a 10 MiB body through stream() never sits whole in the client's memory."""
    async with _client(running, "test/api/big") as conn:
        await conn.send({"bytes": 10 * MIB})
        gc.collect()
        tracemalloc.start()
        try:
            received = 0
            async for chunk in conn.stream():
                received += len(chunk)
                await asyncio.sleep(0)  # a consumer that yields, as real ones do
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert received == 10 * MIB
    # Gateway and client share this process: the peak covers both sides' buffers.
    assert peak < 4 * MIB, f"peak {peak / MIB:.1f} MiB"


async def test_ws_12_misuse_is_refused_with_a_clear_error(running: RunningGateway) -> None:
    """WS-12: recv with nothing pending, concurrent reads, bad payloads, use after close."""
    conn = _client(running, "fal-ai/echo")
    async with conn:
        with pytest.raises(RuntimeError, match="call send"):
            await conn.recv()
        with pytest.raises(TypeError, match="JSON"):
            await conn.send({"x": object()})
        await conn.send({"a": 1})
        first = asyncio.create_task(conn.recv())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="concurrent"):
            await conn.recv()
        assert orjson.loads(await first) == {"echo": {"a": 1}}
    with pytest.raises(fal_realtime.ConnectionLostError, match="fal_realtime.ws"):
        await conn.send({"late": 1})
    assert "closed" in repr(conn) and KEY not in repr(conn)


async def test_ws_13_credentials_refused_or_missing(
    running: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WS-13: a refused key fails at open with UNAUTHORIZED; no key fails before any I/O."""
    conn = fal_realtime.ws("fal-ai/echo", base_url=running.ws_url, key="wrong:key")
    with pytest.raises(fal_realtime.UnauthorizedError) as info:
        async with conn:
            pass
    assert info.value.status == 401 and "wrong:key" not in str(info.value)
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(fal_realtime.UnauthorizedError, match="FAL_KEY"):
        fal_realtime.ws("fal-ai/echo", base_url=running.ws_url)


async def _misbehaving_server(frames: list[str | bytes]) -> AsyncIterator[str]:
    """Serve a WebSocket that answers any request with ``frames`` (a broken peer)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _msg in ws:
            for frame in frames:
                await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "frames",
    [
        ['{"type":"start","request_id":"a","status":200}', "x", '{"type":"end","request_id":"b"}'],
        ["body before start"],
        ['{"type":"end","request_id":"a","status":200}'],
    ],
    ids=["mismatched-end", "body-before-start", "end-without-start"],
)
async def test_ws_14_broken_responses_raise_decode_error(frames: list[str | bytes]) -> None:
    """WS-14: a mismatched end id, a body before start, an end without start: DECODE_ERROR."""
    async for base in _misbehaving_server(frames):
        async with fal_realtime.ws("x/y", base_url=base, key=KEY) as conn:
            await conn.send({})
            with pytest.raises(RealtimeError) as info:
                await conn.recv()
            assert info.value.code == "DECODE_ERROR"


async def test_ws_15_unreachable_host_gives_connection_lost_after_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WS-15: nothing listening: opening is retried per policy, then CONNECTION_LOST."""
    fal_realtime.set_testing(True)
    try:
        conn = fal_realtime.ws(
            "fal-ai/echo", base_url="ws://127.0.0.1:9", key=KEY, reconnect={"max_attempts": 3}
        )
        with pytest.raises(fal_realtime.ConnectionLostError, match="gave up"):
            async with conn:
                pass
    finally:
        fal_realtime.set_testing(False)
    assert isinstance(aiohttp.ClientSession, type)
