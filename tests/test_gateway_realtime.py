"""GW-RT: realtime endpoints behave as fal's runner does (SPEC §2.1, §5)."""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ormsgpack
import pytest

from fal_realtime.server import Gateway, RunningGateway

from .conftest import MS
from .gateway_tools import (
    WAIT,
    FramesRead,
    open_realtime,
    read_until_closed,
    realtime_url,
    receive_frame,
    send_msgpack,
)


async def test_gw_rt_1_echo_round_trip_keeps_bin_type(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-1: a msgpack map comes back echoed, bytes still bytes, str still str."""
    ws = await open_realtime(http, running)
    payload = {"prompt": "hi", "blob": b"\x00\xff", "n": [1, 2.5, None, True]}
    await send_msgpack(ws, payload)
    assert await receive_frame(ws) == ("binary", {"echo": payload})
    await send_msgpack(ws, {"second": 2})
    assert await receive_frame(ws) == ("binary", {"echo": {"second": 2}})
    await ws.close()


class Gate:
    """A handler that blocks on its first input until released; records inputs seen."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.seen: list[Any] = []

    async def __call__(self, value: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(value["i"])
        self.started.set()
        await self.release.wait()
        return {"i": value["i"]}


async def _fill_while_busy(
    http: aiohttp.ClientSession,
    running: RunningGateway,
    gate: Gate,
    app: str,
    frames: FramesRead,
    query: str = "",
) -> list[Any]:
    ws = await open_realtime(http, running, app, query=query)
    await send_msgpack(ws, {"i": 0})
    async with asyncio.timeout(WAIT):
        await gate.started.wait()
    for i in range(1, 6):
        await send_msgpack(ws, {"i": i})
    await frames.until(6)  # the gateway holds all five while input 0 is busy
    gate.release.set()
    results = []
    for _ in range(3 if not query else 2):
        _, value = await receive_frame(ws)
        results.append(value["i"])
    await ws.close()
    return results


async def test_gw_rt_2_buffering_drops_the_oldest(
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GW-RT-2: with buffering=2 the newest two pending inputs survive, the rest drop."""
    gate = Gate()
    gateway.add_realtime("test/gate", gate, buffering=2)
    frames = FramesRead(monkeypatch)
    assert await _fill_while_busy(http, running, gate, "test/gate", frames) == [0, 4, 5]
    assert gate.seen == [0, 4, 5]


async def test_gw_rt_3_max_buffering_query_is_honoured(
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GW-RT-3: max_buffering=1 in the query keeps only the newest pending input."""
    gate = Gate()
    gateway.add_realtime("test/gate", gate)  # buffering=None: would keep all
    frames = FramesRead(monkeypatch)
    got = await _fill_while_busy(http, running, gate, "test/gate", frames, "max_buffering=1")
    assert got == [0, 5]


@pytest.mark.parametrize("value", ["0", "61", "-1", "many"])
async def test_gw_rt_4_max_buffering_out_of_range_rejects_handshake(
    running: RunningGateway, http: aiohttp.ClientSession, value: str
) -> None:
    """GW-RT-4: max_buffering outside 1..60 rejects the handshake with 400."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await open_realtime(http, running, query=f"max_buffering={value}")
    assert info.value.status == 400


async def test_gw_rt_5_handler_error_is_internal_error_then_close_1000(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-5: a raising handler gives x-fal-error INTERNAL_ERROR with its reason, close 1000."""

    @gateway.realtime("test/boom")
    async def boom(value: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError(f"deliberate failure for input {value['n']}")

    ws = await open_realtime(http, running, "test/boom")
    await send_msgpack(ws, {"n": 7})
    transcript = await read_until_closed(ws)
    assert transcript.frames == [
        (
            "text",
            {
                "type": "x-fal-error",
                "error": "INTERNAL_ERROR",
                "reason": "deliberate failure for input 7",
            },
        )
    ]
    assert transcript.close_code == 1000 and transcript.clean_close


@pytest.mark.parametrize(
    ("frame", "reason_part"),
    [
        (b"\xc1\xc1", "cannot decode msgpack"),
        (ormsgpack.packb([1, 2]), "must be a msgpack map"),
        ('{"prompt": "json text"}', "got a text frame"),
    ],
    ids=["not-msgpack", "not-a-map", "json-text"],
)
async def test_gw_rt_6_bad_frame_ends_session_with_internal_error(
    running: RunningGateway, http: aiohttp.ClientSession, frame: bytes | str, reason_part: str
) -> None:
    """GW-RT-6: a frame that is not a msgpack map ends the session: INTERNAL_ERROR, close 1000."""
    ws = await open_realtime(http, running)
    await send_msgpack(ws, {"ok": 1})
    if isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_bytes(frame)
    transcript = await read_until_closed(ws)
    errors = transcript.values("text")
    assert len(errors) == 1
    assert errors[0]["type"] == "x-fal-error" and errors[0]["error"] == "INTERNAL_ERROR"
    assert reason_part in errors[0]["reason"]
    assert transcript.close_code == 1000


async def test_gw_rt_7_idle_session_times_out_then_close_1000(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-7: after session_timeout without input: x-fal-error TIMEOUT, then close 1000."""
    gateway.add_realtime("test/short", _echo, session_timeout=200 * MS)
    ws = await open_realtime(http, running, "test/short")
    await send_msgpack(ws, {"a": 1})
    transcript = await read_until_closed(ws)
    assert transcript.frames[0] == ("binary", {"echo": {"a": 1}})
    assert transcript.frames[1][1]["error"] == "TIMEOUT"
    assert len(transcript.frames) == 2
    assert transcript.close_code == 1000 and transcript.clean_close


async def _echo(value: Any) -> dict[str, Any]:
    return {"echo": value}


async def test_gw_rt_8_pending_inputs_drain_before_timeout(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-8: inputs still pending when the session goes idle are answered before TIMEOUT."""

    async def slow(value: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(150 * MS)
        return value

    gateway.add_realtime("test/slow", slow, session_timeout=100 * MS)
    ws = await open_realtime(http, running, "test/slow")
    for i in range(3):
        await send_msgpack(ws, {"i": i})
    transcript = await read_until_closed(ws)
    assert transcript.values("binary") == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert transcript.values("text")[-1]["error"] == "TIMEOUT"
    assert transcript.close_code == 1000


async def test_gw_rt_9_streaming_handler_ends_session_after_last_item(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-9: a streaming handler's items arrive, then TIMEOUT and close 1000 at once."""

    @gateway.realtime("test/stream", session_timeout=None)
    async def stream(value: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for i in range(value["n"]):
            yield {"i": i}

    ws = await open_realtime(http, running, "test/stream")
    await send_msgpack(ws, {"n": 3})
    transcript = await read_until_closed(ws)
    assert transcript.values("binary") == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [v["error"] for v in transcript.values("text")] == ["TIMEOUT"]
    assert transcript.close_code == 1000


async def test_gw_rt_10_timings_meta_follows_each_result(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-10: with emit_timings, an x-fal-message timings frame follows each result."""
    gateway.add_realtime("test/timed", _echo, emit_timings=True)
    ws = await open_realtime(http, running, "test/timed")
    await send_msgpack(ws, {"a": 1})
    assert await receive_frame(ws) == ("binary", {"echo": {"a": 1}})
    kind, meta = await receive_frame(ws)
    assert kind == "text" and meta["type"] == "x-fal-message" and meta["action"] == "timings"
    assert isinstance(meta["timing"], float) and meta["timing"] >= 0
    await ws.close()


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Key wrong:key"}, {"Authorization": "Bearer forged.x.y"}]
)
async def test_gw_rt_11_refused_credentials_get_unauthorized_then_1008(
    running: RunningGateway, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """GW-RT-11: bad or missing credentials: {"status":"error","error":"Unauthorized"}, 1008."""
    ws = await open_realtime(http, running, headers=headers)
    transcript = await read_until_closed(ws)
    assert transcript.frames == [("text", {"status": "error", "error": "Unauthorized"})]
    assert transcript.close_code == 1008


async def test_gw_rt_12_unknown_realtime_app_is_handshake_404(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-12: a realtime path of an app the gateway does not host: handshake 404."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await open_realtime(http, running, "nobody/nothing")
    assert info.value.status == 404


async def test_gw_rt_13_plain_function_handler_runs_in_a_thread(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-13: a plain (sync) handler runs off the event loop thread."""
    loop_thread = threading.get_ident()

    def sync(value: dict[str, Any]) -> dict[str, Any]:
        return {"same_thread": threading.get_ident() == loop_thread}

    gateway.add_realtime("test/sync", sync)
    ws = await open_realtime(http, running, "test/sync")
    await send_msgpack(ws, {})
    assert await receive_frame(ws) == ("binary", {"same_thread": False})
    await ws.close()


async def test_gw_rt_14_non_map_output_is_internal_error(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-14: a handler that returns something other than a map: INTERNAL_ERROR, 1000."""

    async def bad(value: Any) -> Any:
        return [1, 2]

    gateway.add_realtime("test/bad", bad)
    ws = await open_realtime(http, running, "test/bad")
    await send_msgpack(ws, {})
    transcript = await read_until_closed(ws)
    assert transcript.values("text")[0]["error"] == "INTERNAL_ERROR"
    assert "Expected a dict" in transcript.values("text")[0]["reason"]
    assert transcript.close_code == 1000


async def test_gw_rt_15_oversized_frame_closes_1009(http: aiohttp.ClientSession) -> None:
    """GW-RT-15: a frame over the gateway's max frame size closes the socket with 1009."""
    gateway = Gateway(auth=False, max_frame_bytes=1024)
    gateway.add_realtime("test/echo", _echo)
    async with gateway.serve(port=0) as running:
        ws = await open_realtime(http, running, "test/echo")
        await send_msgpack(ws, {"blob": b"x" * 4096})
        transcript = await read_until_closed(ws)
    assert transcript.values("binary") == []
    assert transcript.close_code == 1009


async def test_gw_rt_16_flux_demo_draws_a_png_of_the_requested_size(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-16: fal-ai/flux-lora-realtime returns a PNG data URL sized per image_size."""
    ws = await open_realtime(http, running, "fal-ai/flux-lora-realtime")
    await send_msgpack(ws, {"prompt": "a tiger eye", "image_size": "landscape_16_9", "seed": 3})
    kind, result = await receive_frame(ws)
    await ws.close()
    assert kind == "binary" and result["seed"] == 3
    image = result["images"][0]
    header, _, data = image["url"].partition(",")
    assert header == "data:image/png;base64"
    png = base64.b64decode(data)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (image["width"], image["height"])
    assert width > height


async def test_gw_rt_17_token_bound_to_alias_works_only_for_that_app(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-17: a token for 'echo' opens fal-ai/echo but is Unauthorized on flux."""
    from .conftest import AUTH

    async with http.post(
        f"{running.url}/tokens/", json={"allowed_apps": ["echo"]}, headers=AUTH
    ) as resp:
        token = await resp.json()
    ws = await open_realtime(http, running, query=f"fal_jwt_token={token}", headers={})
    await send_msgpack(ws, {"t": 1})
    assert await receive_frame(ws) == ("binary", {"echo": {"t": 1}})
    await ws.close()
    ws = await open_realtime(
        http, running, "fal-ai/flux-lora-realtime", query=f"fal_jwt_token={token}", headers={}
    )
    transcript = await read_until_closed(ws)
    assert transcript.frames == [("text", {"status": "error", "error": "Unauthorized"})]


async def test_gw_rt_18_client_leaving_mid_handler_ends_session_quietly(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-18: a client that closes while its input is processed leaves no session behind."""
    gate = Gate()
    gateway.add_realtime("test/gate", gate)
    ws = await open_realtime(http, running, "test/gate")
    await send_msgpack(ws, {"i": 0})
    async with asyncio.timeout(WAIT):
        await gate.started.wait()
    await ws.close()
    gate.release.set()
    # The gateway still answers a new session afterwards.
    ws = await open_realtime(http, running)
    await send_msgpack(ws, {"after": True})
    assert await receive_frame(ws) == ("binary", {"echo": {"after": True}})
    await ws.close()
    assert realtime_url(running).endswith("/fal-ai/echo/realtime")
