"""RT-STREAM: the client streaming inputs to each realtime mode, through its public API only.

``fal_realtime.connect(..., coalesce=False, throttle_interval=0)`` keeps every input and
sends them in order; a session the server ends (TIMEOUT or INTERNAL_ERROR, then close
1000) leaves the connection dormant, and the next send opens a new session, where the
handler starts from nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fal_realtime import INTERNAL_ERROR, ConnectionState
from fal_realtime.server import Gateway, RunningGateway

from .callbacks import Recorder
from .conftest import MS
from .stream_tools import streaming_connect

SESSION_TIMEOUT = 150 * MS
N = 20


async def test_rt_stream_1_unary_answers_every_input_in_order(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-STREAM-1: unary with coalesce=False, throttle 0: every input answered, in order."""
    seen = Recorder()
    async with await streaming_connect(running, "fal-ai/echo", seen) as conn:
        for i in range(N):
            await conn.send({"i": i})
        await seen.until(lambda: len(seen.results) == N)
    assert seen.results == [{"echo": {"i": i}} for i in range(N)]


async def _collect(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return {"got": [item["i"] async for item in inputs]}


async def test_rt_stream_2_client_streaming_gets_every_input_in_order(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-STREAM-2: client streaming: one result naming every input in order, then dormant."""
    gateway.add_realtime("test/collect", _collect, session_timeout=SESSION_TIMEOUT)
    seen = Recorder()
    async with await streaming_connect(running, "test/collect", seen) as conn:
        for i in range(N):
            await conn.send({"i": i})
        await seen.until(lambda: seen.results and conn.state is ConnectionState.DORMANT)
    assert seen.results == [{"got": list(range(N))}] and seen.errors == []


async def test_rt_stream_3_bidirectional_answers_every_input_in_order(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-STREAM-3: bidirectional: one output per input, in the order sent."""

    async def double(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async for item in inputs:
            yield {"i": item["i"], "twice": item["i"] * 2}

    gateway.add_realtime("test/double", double, session_timeout=None)
    seen = Recorder()
    async with await streaming_connect(running, "test/double", seen) as conn:
        for i in range(N):
            await conn.send({"i": i})
        await seen.until(lambda: len(seen.results) == N)
    assert seen.results == [{"i": i, "twice": 2 * i} for i in range(N)]


async def test_rt_stream_4_server_streaming_takes_one_input_per_session(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-STREAM-4: server streaming: a send during a stream is ignored; one after it streams."""
    release = asyncio.Event()

    async def count(value: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"run": value["run"], "i": 0}
        if value["run"] == 1:
            await release.wait()
        yield {"run": value["run"], "i": 1}

    gateway.add_realtime("test/count", count, session_timeout=None)
    seen = Recorder()
    async with await streaming_connect(running, "test/count", seen) as conn:
        await conn.send({"run": 1})
        await seen.until(lambda: seen.results)
        await conn.send({"run": 2})  # same session, mid-stream: fal's runner never reads it
        release.set()
        await seen.until(lambda: seen.dormant_times() == 1)
        await conn.send({"run": 3})  # dormant: a new session, a new stream
        await seen.until(lambda: seen.dormant_times() == 2)
    assert [(r["run"], r["i"]) for r in seen.results] == [(1, 0), (1, 1), (3, 0), (3, 1)]


async def test_rt_stream_5_a_new_session_starts_from_nothing(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-STREAM-5: after a session timed out, the next sends open a new one: no state carried."""
    gateway.add_realtime("test/collect", _collect, session_timeout=SESSION_TIMEOUT)
    seen = Recorder()
    async with await streaming_connect(running, "test/collect", seen) as conn:
        for i in range(2):
            await conn.send({"i": i})
        await seen.until(lambda: seen.dormant_times() == 1)
        for i in range(2, 5):
            await conn.send({"i": i})
        await seen.until(lambda: seen.dormant_times() == 2)
    assert seen.results == [{"got": [0, 1]}, {"got": [2, 3, 4]}] and seen.errors == []


async def test_rt_stream_6_a_failing_stream_reports_then_the_next_send_starts_afresh(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-STREAM-6: bidi handler fails mid-stream: INTERNAL_ERROR, dormant; a fresh session next."""

    async def numbered(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        index = 0
        async for item in inputs:
            if item.get("fail"):
                raise RuntimeError("caption model crashed")
            yield {"index": index, "text": item["text"]}
            index += 1

    gateway.add_realtime("test/numbered", numbered, session_timeout=None)
    seen = Recorder()
    async with await streaming_connect(running, "test/numbered", seen) as conn:
        await conn.send({"text": "a"})
        await conn.send({"text": "b"})
        await conn.send({"fail": True})
        await seen.until(lambda: seen.errors and conn.state is ConnectionState.DORMANT)
        await conn.send({"text": "c"})
        await seen.until(lambda: len(seen.results) == 3)
    assert [(r["index"], r["text"]) for r in seen.results] == [(0, "a"), (1, "b"), (0, "c")]
    assert [(e.code, str(e)) for e in seen.errors] == [
        (INTERNAL_ERROR, "INTERNAL_ERROR: caption model crashed")
    ]
