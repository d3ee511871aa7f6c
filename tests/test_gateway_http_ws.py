"""GW-WS: HTTP over WebSockets on the gateway (SPEC §2.2, §5)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fal_realtime._protocol.sse import SSEParser
from fal_realtime.server import Gateway, RunningGateway

from .conftest import AUTH, KEY
from .gateway_tools import WAIT, http_ws_request, joined, receive_frame


async def _open(
    http: aiohttp.ClientSession,
    running: RunningGateway,
    app: str,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> aiohttp.ClientWebSocketResponse:
    url = f"{running.ws_url}/{app}" + (f"?{query}" if query else "")
    return await http.ws_connect(url, headers=AUTH if headers is None else headers)


RELEASE: web.AppKey[asyncio.Event] = web.AppKey("release", asyncio.Event)


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """Serve a small HTTP app on 127.0.0.1: status, bytes, paths and slow streams."""
    release = asyncio.Event()

    async def status(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return web.json_response({"asked": body}, status=int(request.match_info["code"]))

    async def binary(request: web.Request) -> web.StreamResponse:
        size = (await request.json())["size"]
        data = bytes(i % 256 for i in range(size))
        return web.Response(body=data, content_type="application/octet-stream")

    async def where(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"path": request.path, "auth": request.headers.get("Authorization")}
        )

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        await resp.write(b"first")
        # Only a client that already saw "first" can release the rest: proves no buffering.
        await release.wait()
        await resp.write(b"second")
        await resp.write_eof()
        return resp

    async def lookalike(request: web.Request) -> web.StreamResponse:
        return web.json_response({"type": "end", "request_id": "fake", "status": 200})

    app = web.Application()
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/binary", binary)
    app.router.add_post("/slow", slow)
    app.router.add_post("/lookalike", lookalike)
    app.router.add_post("/{tail:.*}", where)
    server = TestServer(app, host="127.0.0.1")
    app[RELEASE] = release
    await server.start_server()
    try:
        yield server
    finally:
        release.set()
        await server.close()


def _register(gateway: Gateway, server: TestServer) -> None:
    gateway.http_app("test/api", upstream=str(server.make_url("")).rstrip("/"))


async def test_gw_ws_1_json_answer_is_start_text_body_end(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-WS-1: any-llm answers start (200, JSON type), a text body, end with the same id."""
    ws = await _open(http, running, "fal-ai/any-llm")
    await ws.send_str(
        orjson.dumps({"prompt": "What is the meaning of life? Respond in 7 words."}).decode()
    )
    start, body, end = await http_ws_request(ws)
    await ws.close()
    assert start["status"] == 200 and start["headers"]["content-type"].startswith(
        "application/json"
    )
    assert all(isinstance(part, str) for part in body)
    answer = orjson.loads(joined(body))
    assert len(answer["output"].split()) == 7 and answer["partial"] is False
    assert answer["error"] is None
    assert end["request_id"] == start["request_id"] and end["status"] == 200
    assert isinstance(end["time_to_first_byte_seconds"], float)


async def test_gw_ws_2_pipelined_requests_are_answered_in_order(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-WS-2: three requests sent before reading come back in the order sent."""
    ws = await _open(http, running, "fal-ai/echo")
    for i in range(3):
        await ws.send_str(orjson.dumps({"i": i}).decode())
    seen, ids = [], set()
    for _ in range(3):
        start, body, end = await http_ws_request(ws)
        assert end["request_id"] == start["request_id"]
        ids.add(start["request_id"])
        seen.append(orjson.loads(joined(body))["echo"]["i"])
    await ws.close()
    assert seen == [0, 1, 2] and len(ids) == 3


async def test_gw_ws_3_sse_stream_grows_and_ends_not_partial(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-WS-3: any-llm/stream sends text/event-stream bytes: growing outputs, last not partial."""
    ws = await _open(http, running, "fal-ai/any-llm/stream")
    await ws.send_str(orjson.dumps({"prompt": "Respond in 6 words."}).decode())
    start, body, _ = await http_ws_request(ws)
    await ws.close()
    assert start["headers"]["content-type"].startswith("text/event-stream")
    assert all(isinstance(part, bytes) for part in body)
    parser = SSEParser()
    events = [event for part in body for event in parser.feed(part)]
    data = [orjson.loads(event.data) for event in events]
    assert {event.event for event in events} == {"event"}
    outputs = [item["output"] for item in data]
    assert all(b.startswith(a) for a, b in zip(outputs, outputs[1:], strict=False))
    assert [item["partial"] for item in data][-1] is False
    assert all(item["partial"] for item in data[:-1])
    assert len(outputs[-1].split()) == 6


async def test_gw_ws_4_upstream_down_is_502_then_connection_still_usable(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-WS-4: upstream down: start 502 + JSON body + end; the same socket works once it is up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway.http_app("test/later", upstream=f"http://127.0.0.1:{port}")
    ws = await _open(http, running, "test/later")
    await ws.send_str('{"first": true}')
    start, body, end = await http_ws_request(ws)
    assert start["status"] == 502 and end["status"] == 502
    assert "not reachable" in orjson.loads(joined(body))["detail"]

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.json_response({"up": True})

    app = web.Application()
    app.router.add_post("/", ok)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        await ws.send_str('{"second": true}')
        start, body, _ = await http_ws_request(ws)
        assert start["status"] == 200 and orjson.loads(joined(body)) == {"up": True}
    finally:
        await ws.close()
        await server.close()


async def test_gw_ws_5_payload_not_json_is_400_then_usable(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-WS-5: a payload that is not JSON gets start 400 + JSON body + end; next one works."""
    ws = await _open(http, running, "fal-ai/echo")
    await ws.send_str("this is not json")
    start, body, end = await http_ws_request(ws)
    assert (start["status"], end["status"]) == (400, 400)
    assert "not valid JSON" in orjson.loads(joined(body))["detail"]
    await ws.send_str('{"fine": 1}')
    start, body, _ = await http_ws_request(ws)
    await ws.close()
    assert start["status"] == 200 and orjson.loads(joined(body)) == {"echo": {"fine": 1}}


async def test_gw_ws_6_unknown_app_is_404_and_socket_stays_usable(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-WS-6: an unknown app: start 404 + JSON body + end, twice on one socket."""
    ws = await _open(http, running, "nobody/nothing")
    for _ in range(2):
        await ws.send_str("{}")
        start, body, end = await http_ws_request(ws)
        assert (start["status"], end["status"]) == (404, 404)
        assert "nobody/nothing" in orjson.loads(joined(body))["detail"]
    await ws.close()


@pytest.mark.parametrize("code", [418, 422, 500, 503])
async def test_gw_ws_7_upstream_error_status_passes_through(
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    upstream: TestServer,
    code: int,
) -> None:
    """GW-WS-7: an upstream 4xx/5xx arrives as that status with the upstream's body."""
    _register(gateway, upstream)
    ws = await _open(http, running, f"test/api/status/{code}")
    await ws.send_str('{"q": 1}')
    start, body, end = await http_ws_request(ws)
    await ws.close()
    assert (start["status"], end["status"]) == (code, code)
    assert orjson.loads(joined(body)) == {"asked": {"q": 1}}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Key nope"}])
async def test_gw_ws_8_refused_credentials_are_handshake_401_with_json(
    running: RunningGateway, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """GW-WS-8: HTTP-over-WS refuses bad credentials at the handshake: 401, JSON body."""
    async with http.get(
        f"{running.url}/fal-ai/echo",
        headers={
            **headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/json"
        assert "detail" in await resp.json()


async def test_gw_ws_9_body_streams_without_being_buffered_whole(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """GW-WS-9: the first chunk reaches the client while the upstream is still mid-body."""
    _register(gateway, upstream)
    ws = await _open(http, running, "test/api/slow")
    await ws.send_str("{}")
    _, start = await receive_frame(ws)
    assert start["type"] == "start"
    async with asyncio.timeout(WAIT):
        first = await ws.receive()
    assert (first.type, first.data) == (aiohttp.WSMsgType.BINARY, b"first")
    assert upstream.app is not None
    upstream.app[RELEASE].set()
    rest = []
    async with asyncio.timeout(WAIT):
        while (msg := await ws.receive()).type == aiohttp.WSMsgType.BINARY:
            rest.append(msg.data)
    await ws.close()
    assert b"".join(rest) == b"second"
    assert orjson.loads(msg.data)["type"] == "end"


async def test_gw_ws_10_binary_body_arrives_byte_exact(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """GW-WS-10: a binary body (not UTF-8) of 3 MiB arrives as binary frames, byte exact."""
    _register(gateway, upstream)
    size = 3 * 1024 * 1024
    ws = await _open(http, running, "test/api/binary")
    await ws.send_str(orjson.dumps({"size": size}).decode())
    start, body, _ = await http_ws_request(ws)
    await ws.close()
    assert start["headers"]["content-type"] == "application/octet-stream"
    assert all(isinstance(part, bytes) for part in body)
    assert joined(body) == bytes(i % 256 for i in range(size))


async def test_gw_ws_11_body_that_looks_like_control_goes_as_binary(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """GW-WS-11: a JSON body shaped like an end frame is sent as bytes so it cannot end early."""
    _register(gateway, upstream)
    ws = await _open(http, running, "test/api/lookalike")
    await ws.send_str("{}")
    start, body, end = await http_ws_request(ws)
    await ws.close()
    assert body and all(isinstance(part, bytes) for part in body)
    assert orjson.loads(joined(body))["request_id"] == "fake"
    assert end["request_id"] == start["request_id"] != "fake"


async def test_gw_ws_12_sub_path_is_forwarded_and_key_is_not(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """GW-WS-12: /owner/app/a/b is POSTed to upstream /a/b, without the client's key."""
    _register(gateway, upstream)
    ws = await _open(http, running, "test/api/a/b")
    await ws.send_str("{}")
    _, body, _ = await http_ws_request(ws)
    await ws.close()
    assert orjson.loads(joined(body)) == {"path": "/a/b", "auth": None}


async def test_gw_ws_13_token_in_query_opens_http_ws(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-WS-13: a token from /tokens/ (bound to 'any-llm') opens HTTP-over-WS too."""
    async with http.post(
        f"{running.url}/tokens/", json={"allowed_apps": ["any-llm"]}, headers=AUTH
    ) as resp:
        token = await resp.json()
    ws = await _open(http, running, "fal-ai/any-llm", headers={}, query=f"fal_jwt_token={token}")
    await ws.send_str('{"prompt": "in 2 words"}')
    start, body, _ = await http_ws_request(ws)
    await ws.close()
    assert start["status"] == 200 and len(orjson.loads(joined(body))["output"].split()) == 2


async def test_gw_ws_14_in_process_handler_upstream(http: aiohttp.ClientSession) -> None:
    """GW-WS-14: an in-process aiohttp handler works as an upstream, per sub-path."""
    gateway = Gateway(keys=[KEY])

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"path": request.path, "body": await request.json()})

    gateway.http_app("me/api", upstream=handler)
    async with gateway.serve(port=0) as running:
        ws = await _open(http, running, "me/api/x")
        await ws.send_str('{"v": 1}')
        _, body, _ = await http_ws_request(ws)
        await ws.close()
    assert orjson.loads(joined(body)) == {"path": "/x", "body": {"v": 1}}


async def test_gw_ws_15_client_leaving_mid_response_frees_the_socket(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """GW-WS-15: a client that closes mid-response does not stop the gateway serving others."""
    _register(gateway, upstream)
    ws = await _open(http, running, "test/api/slow")
    await ws.send_str("{}")
    await receive_frame(ws)
    await ws.close()
    ws = await _open(http, running, "fal-ai/echo")
    await ws.send_str('{"again": 1}')
    _, body, _ = await http_ws_request(ws)
    await ws.close()
    assert orjson.loads(joined(body)) == {"echo": {"again": 1}}
