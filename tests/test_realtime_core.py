"""RT-CORE: what a connection costs and holds, over real sockets (issue 12; SPEC §3).

The shared ``ClientSession``, the tasks an idle connection holds, callbacks delivered
inline, a refusal that arrives after ``connect()`` returned, and the same error text
for the same cause on both clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import fal_realtime
from fal_realtime import ConnectionState, RealtimeError, UnauthorizedError
from fal_realtime._transport import shared_session
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import echo_realtime

from .conftest import KEY, MS
from .gateway_tools import WAIT as WAIT_S
from .gateway_tools import eventually, on_io_alone

ECHO = "fal-ai/echo"


def our_tasks() -> list[str]:
    """Return the names of this package's tasks that are alive now, sorted."""
    return sorted(
        t.get_name().split("[")[0]
        for t in asyncio.all_tasks()
        if t.get_name().startswith("fal-realtime") and not t.done()
    )


async def test_rt_core_1_connections_share_one_session_closed_with_the_last(
    running: RunningGateway,
) -> None:
    """RT-CORE-1: both clients share the loop's ClientSession; the last to close closes it."""
    assert shared_session() is None
    a = await fal_realtime.connect(ECHO, base_url=running.ws_url, key=KEY)
    b = await fal_realtime.connect(ECHO, base_url=running.ws_url, key=KEY, use_jwt=False)
    session = shared_session()
    assert session is not None and not session.closed
    await a.close()
    assert shared_session() is session and not session.closed
    async with fal_realtime.ws(ECHO, base_url=running.ws_url, key=KEY) as conn:
        assert (await conn.request({"n": 1})).json() == {"echo": {"n": 1}}
        await b.close()
        assert shared_session() is session and not session.closed  # ws() holds it
    assert session.closed and shared_session() is None


async def test_rt_core_2_a_session_of_your_own_is_used_and_never_closed(
    running: RunningGateway,
) -> None:
    """RT-CORE-2: session= is used for sockets and tokens, and left open by close()."""
    results: list[Any] = []
    async with aiohttp.ClientSession() as mine:
        conn = await fal_realtime.connect(
            ECHO, base_url=running.ws_url, key=KEY, session=mine, on_result=results.append
        )
        async with conn:
            assert shared_session() is None
            await conn.send({"own": 1})
            await eventually(lambda: results)
        async with fal_realtime.ws(ECHO, base_url=running.ws_url, key=KEY, session=mine) as c:
            assert (await c.request({"own": 2})).json() == {"echo": {"own": 2}}
        assert not mine.closed and shared_session() is None
    assert results == [{"echo": {"own": 1}}]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"use_jwt": False, "heartbeat_s": None}, ["fal-realtime-driver"]),
        ({"use_jwt": True, "heartbeat_s": None}, ["fal-realtime-driver", "fal-realtime-refresh"]),
        ({"use_jwt": False}, ["fal-realtime-driver"]),  # the keep-alive is a timer
    ],
    ids=["key_header", "jwt", "key_header_with_heartbeat"],
)
async def test_rt_core_3_an_idle_connection_holds_only_what_it_needs(
    running: RunningGateway, options: dict[str, Any], expected: list[str]
) -> None:
    """RT-CORE-3: idle and open: a reader, plus a refresher only with a token and a keep-alive."""
    lazy = await fal_realtime.connect(ECHO, base_url=running.ws_url, key=KEY, lazy=True)
    assert our_tasks() == []  # nothing before the first send
    await lazy.close()
    got: list[Any] = []
    conn = await fal_realtime.connect(
        ECHO, base_url=running.ws_url, key=KEY, on_result=got.append, **options
    )
    try:
        await conn.send({"n": 1})
        await eventually(lambda: got)
        assert our_tasks() == expected  # no writer, dispatcher or supervisor standing by
    finally:
        await conn.close()
    assert our_tasks() == []


async def test_rt_core_4_a_dormant_connection_holds_no_task(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-CORE-4: after the server ended an idle session (dormant) no task is left; send reopens."""
    gateway.add_realtime("test/short", echo_realtime, session_timeout=100 * MS)
    got: list[Any] = []
    async with await fal_realtime.connect(
        "test/short", base_url=running.ws_url, key=KEY, on_result=got.append
    ) as conn:
        await conn.send({"n": 1})
        await eventually(lambda: conn.state is ConnectionState.DORMANT)
        await eventually(lambda: our_tasks() == [])
        await conn.send({"n": 2})
        await eventually(lambda: len(got) == 2)
        assert conn.state is ConnectionState.OPEN


@pytest.mark.parametrize("flavour", ["plain", "async"])
async def test_rt_core_5_callbacks_that_do_not_suspend_run_inline(
    running: RunningGateway, flavour: str
) -> None:
    """RT-CORE-5: a callback that finishes at once runs as its result is read, in order."""
    if flavour == "async" and sys.version_info < (3, 12):
        pytest.skip("eager tasks need Python 3.12+; 3.11 runs async callbacks in a task")
    seen: list[tuple[int, int]] = []
    conn: Any = None

    def plain(value: Any) -> None:
        seen.append((value["echo"]["n"], conn.stats.results))

    async def eager(value: Any) -> None:
        seen.append((value["echo"]["n"], conn.stats.results))

    conn = await fal_realtime.connect(
        ECHO,
        base_url=running.ws_url,
        key=KEY,
        throttle_interval=0,
        coalesce=False,
        on_result=plain if flavour == "plain" else eager,
    )
    async with conn:
        for n in range(20):  # pipelined: results arrive in bursts, read back to back
            await conn.send({"n": n})
        await eventually(lambda: len(seen) == 20)
    # Each callback ran before the reader took the next result off the socket.
    assert seen == [(n, n + 1) for n in range(20)]


async def test_rt_core_6_a_suspending_callback_never_blocks_the_reader(
    running: RunningGateway,
) -> None:
    """RT-CORE-6: while an async callback waits, results are read; the next ones wait their turn."""
    gate = asyncio.Event()
    calls: list[str] = []

    async def on_result(value: Any) -> None:
        n = value["echo"]["n"]
        calls.append(f"start:{n}")
        if n == 0:
            await gate.wait()
        calls.append(f"end:{n}")

    conn = await fal_realtime.connect(
        ECHO,
        base_url=running.ws_url,
        key=KEY,
        throttle_interval=0,
        max_buffering=60,  # every input answered (latest wins at the server by default)
        on_result=on_result,
    )
    async with conn:
        for n in range(3):
            await conn.send({"n": n})
        await eventually(lambda: conn.stats.results == 3)  # the reader kept reading
        assert calls == ["start:0"]
        gate.set()
        await eventually(lambda: len(calls) == 6)
    assert calls == ["start:0", "end:0", "start:1", "end:1", "start:2", "end:2"]


def _late_refusing_gateway(refusals: list[int]) -> Gateway:
    """Serve test/late: the first socket is refused after its first input, later ones at once."""
    gateway = Gateway(keys=[KEY], heartbeat_s=None)

    async def late(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        refusals.append(len(refusals))
        if len(refusals) == 1:
            await ws.receive()  # accepted, and refused only once an input arrived
        await ws.send_str('{"status": "error", "error": "Unauthorized"}')
        await ws.close(code=1008, message=b"Unauthorized")
        return ws

    gateway.add_routes([web.get("/test/late/realtime", late)])
    return gateway


@pytest.mark.parametrize("use_jwt", [False, True], ids=["key_header", "jwt"])
async def test_rt_core_7_a_refusal_after_connect_returned_fails_the_connection(
    instant_retries: None, use_jwt: bool
) -> None:
    """RT-CORE-7: a late refusal: on_error UNAUTHORIZED, state failed, the next send raises."""
    refusals: list[int] = []
    errors: list[RealtimeError] = []
    async with _late_refusing_gateway(refusals).serve(port=0) as running:
        conn = await fal_realtime.connect(
            "test/late",
            base_url=running.ws_url,
            key=KEY,
            use_jwt=use_jwt,
            on_error=errors.append,
        )
        try:
            assert conn.state is ConnectionState.OPEN  # connect() returned: no refusal yet
            await conn.send({"n": 1})
            await eventually(lambda: conn.state is ConnectionState.FAILED)
            with pytest.raises(UnauthorizedError):
                await conn.send({"n": 2})
        finally:
            await conn.close()
    assert [e.code for e in errors] == ["UNAUTHORIZED"]
    # With a token, the one retry with a new token was refused too; a Key header is final.
    assert len(refusals) == (2 if use_jwt else 1)


def _where_removed(message: str) -> str:
    return re.sub(r"wss?://[^\s)]+", "<url>", message)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 503])
async def test_rt_core_8_same_cause_same_error_on_both_clients(
    gateway: Gateway, running: RunningGateway, status: int
) -> None:
    """RT-CORE-8: a handshake refused with a status gives both clients the same error."""
    gateway.set_faults(ECHO, f"reject_status={status}")
    with pytest.raises(RealtimeError) as realtime:
        await fal_realtime.connect(
            ECHO, base_url=running.ws_url, key=KEY, use_jwt=False, reconnect=False
        )
    with pytest.raises(RealtimeError) as http_ws:
        async with fal_realtime.ws(ECHO, base_url=running.ws_url, key=KEY, reconnect=False):
            pass
    one, other = realtime.value, http_ws.value
    assert (one.code, one.status, type(one)) == (other.code, other.status, type(other))
    assert _where_removed(one.message) == _where_removed(other.message)
    assert "<url>" in _where_removed(one.message)


async def test_rt_core_9_no_fixed_wait_before_connect_returns(running: RunningGateway) -> None:
    """RT-CORE-9: connect() returns as the socket opens, on I/O alone: no fixed wait."""
    conn = await on_io_alone(
        fal_realtime.connect(ECHO, base_url=running.ws_url, key=KEY, use_jwt=False)
    )
    assert conn.state is ConnectionState.OPEN
    await conn.close()


class _Pinged:
    """Stands in for a socket's ``ping()`` (the timers are under test, not the wire)."""

    def __init__(self) -> None:
        self.pings = 0
        self.sent = asyncio.Event()

    async def ping(self, message: bytes = b"") -> None:
        self.pings += 1
        self.sent.set()


async def test_rt_core_10_the_keepalive_timers_ping_only_a_silent_socket() -> None:
    """RT-CORE-10: KeepAlive.watch: a heard socket is not pinged; an unanswered ping expires."""
    from fal_realtime._keepalive import KeepAlive

    loop = asyncio.get_running_loop()
    keepalive, ws = KeepAlive(20 * MS), _Pinged()
    ping_tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Any) -> asyncio.Task[None]:
        ping_tasks.append(loop.create_task(coro))
        return ping_tasks[-1]

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(WAIT_S):  # bounds the test; the watch expires sooner
            async with asyncio.timeout(None) as reading:
                watch = keepalive.watch(ws, reading, spawn)
                try:
                    for _ in range(3):  # busy: a frame heard in every interval
                        keepalive.heard = True
                        await asyncio.sleep(20 * MS)
                    assert ws.pings == 0
                    await ws.sent.wait()  # silent now: pinged once, and no pong comes
                    await asyncio.Event().wait()
                finally:
                    watch.stop()
    assert reading.expired() and "no pong within" in keepalive.missed
    assert ws.pings == keepalive.pings == 1
    assert all(task.done() for task in ping_tasks) and len(ping_tasks) == 1


async def test_rt_core_11_an_async_callback_runs_as_its_own_task(running: RunningGateway) -> None:
    """RT-CORE-11: an async on_result is its own task from its first line: timeouts work in it."""
    seen: list[tuple[bool, bool, str]] = []
    done = asyncio.Event()

    async def on_result(value: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        async with asyncio.timeout(WAIT_S):  # entered before the first suspension
            await asyncio.sleep(0)
            after = asyncio.current_task()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0):  # expires: cancels this task, not the reader
                await asyncio.sleep(WAIT_S)
        seen.append((after is task, task.get_name().startswith("fal-realtime-callback"), value))
        done.set()

    conn = await fal_realtime.connect(
        ECHO, base_url=running.ws_url, key=KEY, use_jwt=False, on_result=on_result
    )
    async with conn:
        for n in range(2):
            done.clear()
            await conn.send({"n": n})
            async with asyncio.timeout(WAIT_S):
                await done.wait()
        assert conn.state is ConnectionState.OPEN  # the reader was never cancelled
    assert seen == [(True, True, {"echo": {"n": n}}) for n in range(2)]
