"""GW-FAULT: fault injection per app and per connection (SPEC §5)."""

from __future__ import annotations

import time

import aiohttp
import orjson
import pytest

from fal_realtime.server import Faults, Gateway, RunningGateway, parse_faults

from .conftest import AUTH, MS
from .gateway_tools import (
    http_ws_request,
    joined,
    open_realtime,
    read_until_closed,
    receive_frame,
    send_msgpack,
)


async def _echo_n(ws: aiohttp.ClientWebSocketResponse, n: int) -> None:
    for i in range(n):
        await send_msgpack(ws, {"i": i})
        assert await receive_frame(ws) == ("binary", {"echo": {"i": i}})


async def test_gw_fault_1_drop_after_n_aborts_without_close_frame(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-FAULT-1: drop_after=2 delivers two results, then the TCP connection is cut (1006)."""
    ws = await open_realtime(http, running, query="fal_faults=drop_after=2")
    await _echo_n(ws, 2)
    transcript = await read_until_closed(ws)
    assert transcript.frames == []
    assert transcript.close_code == 1006 and not transcript.clean_close


@pytest.mark.parametrize("code", [1011, 1012, 1013])
async def test_gw_fault_2_close_with_a_given_code(
    running: RunningGateway, http: aiohttp.ClientSession, code: int
) -> None:
    """GW-FAULT-2: drop_mode=close closes cleanly with the configured code."""
    ws = await open_realtime(
        http, running, query=f"fal_faults=drop_after=1;drop_mode=close;close_code={code}"
    )
    await _echo_n(ws, 1)
    transcript = await read_until_closed(ws)
    assert transcript.close_code == code and transcript.clean_close


async def test_gw_fault_3_delay_holds_each_result(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-FAULT-3: delay_ms=150 holds a result back at least that long."""
    ws = await open_realtime(http, running, query="fal_faults=delay_ms=150")
    started = time.monotonic()
    await _echo_n(ws, 1)
    # libuv's timers (uvloop) count whole milliseconds: a 150 ms wait may end up to 1 ms early.
    assert time.monotonic() - started >= 149 * MS
    await ws.close()


async def test_gw_fault_4_rate_limited_answer_keeps_session_open(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-FAULT-4: rate_limit_every=2 answers input 2 with RATE_LIMITED; input 3 still works."""
    ws = await open_realtime(http, running, query="fal_faults=rate_limit_every=2")
    await _echo_n(ws, 1)
    await send_msgpack(ws, {"i": 1})
    kind, error = await receive_frame(ws)
    assert kind == "text" and error["type"] == "x-fal-error" and error["error"] == "RATE_LIMITED"
    await send_msgpack(ws, {"i": 2})
    assert await receive_frame(ws) == ("binary", {"echo": {"i": 2}})
    await ws.close()


async def test_gw_fault_5_refuse_auth_despite_a_good_key(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-FAULT-5: refuse_auth=1 makes a valid key Unauthorized (realtime) / 401 (HTTP-WS)."""
    ws = await open_realtime(http, running, query="fal_faults=refuse_auth=1")
    transcript = await read_until_closed(ws)
    assert transcript.frames == [("text", {"status": "error", "error": "Unauthorized"})]
    assert transcript.close_code == 1008
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(
            f"{running.ws_url}/fal-ai/echo?fal_faults=refuse_auth=1", headers=AUTH
        )
    assert info.value.status == 401


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_gw_fault_6_reject_handshake_with_status(
    running: RunningGateway, http: aiohttp.ClientSession, status: int
) -> None:
    """GW-FAULT-6: reject_status=S refuses the WebSocket handshake with HTTP S."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await open_realtime(http, running, query=f"fal_faults=reject_status={status}")
    assert info.value.status == status


async def test_gw_fault_7_per_app_faults_for_the_next_n_connections(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-FAULT-7: per-app connections=1 breaks only the next connection; later ones work."""
    gateway.set_faults("fal-ai/echo", "drop_after=0;connections=1")
    ws = await open_realtime(http, running)
    assert (await read_until_closed(ws)).close_code == 1006
    ws = await open_realtime(http, running)
    await _echo_n(ws, 2)
    await ws.close()
    gateway.set_faults("fal-ai/echo", Faults(rate_limit_every=1))
    ws = await open_realtime(http, running)
    await send_msgpack(ws, {})
    assert (await receive_frame(ws))[1]["error"] == "RATE_LIMITED"
    await ws.close()
    gateway.set_faults("fal-ai/echo", None)
    ws = await open_realtime(http, running)
    await _echo_n(ws, 1)
    await ws.close()


async def test_gw_fault_8_bad_fault_spec_is_handshake_400(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-FAULT-8: an unparsable fal_faults spec rejects the handshake with 400."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await open_realtime(http, running, query="fal_faults=explode=yes")
    assert info.value.status == 400


async def test_gw_fault_9_http_ws_drop_mid_response_and_rate_limit(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-FAULT-9: over HTTP-over-WS, drop_after cuts mid-response; rate_limit gives 429."""
    ws = await http.ws_connect(
        f"{running.ws_url}/fal-ai/echo?fal_faults=drop_after=2", headers=AUTH
    )
    await ws.send_str('{"a": 1}')
    first = await ws.receive()
    assert orjson.loads(first.data)["type"] == "start"
    await ws.receive()  # the body: the second frame, then the cut
    transcript = await read_until_closed(ws)
    assert transcript.close_code == 1006
    ws = await http.ws_connect(
        f"{running.ws_url}/fal-ai/echo?fal_faults=rate_limit_every=1", headers=AUTH
    )
    await ws.send_str("{}")
    start, body, end = await http_ws_request(ws)
    await ws.close()
    assert (start["status"], end["status"]) == (429, 429)
    assert "rate limited" in orjson.loads(joined(body))["detail"]


def test_gw_fault_10_spec_parsing() -> None:
    """GW-FAULT-10: specs parse to Faults; unknown names and bad values raise ValueError."""
    assert parse_faults("drop_after=3; drop_mode=close ;close_code=1012") == Faults(
        drop_after=3, drop_mode="close", close_code=1012
    )
    assert parse_faults("delay_ms=2.5,refuse_auth=true") == Faults(delay_ms=2.5, refuse_auth=True)
    assert parse_faults("") == Faults() and not Faults().active
    for bad in ["nope=1", "drop_after", "drop_after=-1", "delay_ms=x", "drop_mode=maybe"]:
        with pytest.raises(ValueError, match="fault item"):
            parse_faults(bad)
    assert Faults(drop_after=1).merged(Faults(delay_ms=5)) == Faults(drop_after=1, delay_ms=5)
