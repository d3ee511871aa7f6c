"""RT: the realtime client against the project's gateway, over real sockets (SPEC §2.1, §3, §4)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

import fal_realtime
from fal_realtime import ConnectionState, RealtimeConnection, RealtimeError, ReconnectPolicy
from fal_realtime._transport import shared_session
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.testing import connect_with_query

from .callbacks import Recorder
from .conftest import KEY, MS
from .gateway_tools import FramesRead, count_handshakes, count_upgrades, eventually

WAIT = 5000 * MS


async def _connect(
    running: RunningGateway, app: str = "fal-ai/echo", rec: Recorder | None = None, **kwargs: Any
) -> RealtimeConnection:
    callbacks = rec.hooks() if rec is not None else {}
    options = {"base_url": running.ws_url, "key": KEY, **callbacks, **kwargs}
    if (query := options.pop("query", None)) is not None:  # the gateway's fault flags
        return await connect_with_query(app, query, **options)
    return await fal_realtime.connect(app, **options)


async def _echo(value: Any) -> dict[str, Any]:
    return {"echo": value}


# -- sending and throttling ---------------------------------------------------------------


async def test_rt_1_lock_step_echo_in_order(running: RunningGateway) -> None:
    """RT-1: lock-step send/result round trips arrive in order; latency is recorded."""
    rec = Recorder()
    async with await _connect(running, rec=rec, throttle_interval=0) as conn:
        assert conn.state is ConnectionState.OPEN and rec.opens == 1
        for i in range(20):
            await conn.send({"i": i})
            await rec.until(lambda i=i: len(rec.results) == i + 1)
        assert rec.results == [{"echo": {"i": i}} for i in range(20)]
        assert conn.stats.sent == 20 and conn.stats.results == 20
        assert conn.stats.last_latency_s is not None and conn.stats.last_latency_s > 0
    assert rec.errors == [] and conn.state is ConnectionState.CLOSED


async def test_rt_2_burst_latest_wins_with_exact_counts(running: RunningGateway) -> None:
    """RT-2: ten sends in one burst: the first goes at once, the last at the interval's end."""
    rec = Recorder()
    async with await _connect(running, rec=rec, throttle_interval=50 * MS) as conn:
        for i in range(10):
            await conn.send({"i": i})
        await rec.until(lambda: len(rec.results) == 2)
        # The barrier: a sentinel, answered in order after anything still on its way.
        await conn.send({"sentinel": True})
        await rec.until(lambda: len(rec.results) == 3)
        assert rec.results == [{"echo": {"i": 0}}, {"echo": {"i": 9}}, {"echo": {"sentinel": True}}]
        # Nothing was left waiting for the sentinel to supersede.
        assert (conn.stats.sent, conn.stats.coalesced, conn.stats.results) == (3, 8, 3)


async def test_rt_3_no_coalesce_paces_every_message_in_order(running: RunningGateway) -> None:
    """RT-3: coalesce=False delivers all in order, paced, and send waits when the queue is full."""
    rec = Recorder()
    async with await _connect(
        running, rec=rec, throttle_interval=5 * MS, coalesce=False, max_pending=4
    ) as conn:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(30):
            await conn.send({"i": i})
            assert conn.pending <= 4
        # 30 messages, one per 5 ms, at most 4 waiting: send() had to wait for room.
        assert loop.time() - started >= (30 - 4 - 1) * 5 * MS
        await rec.until(lambda: len(rec.results) == 30)
        assert rec.results == [{"echo": {"i": i}} for i in range(30)]
        assert conn.stats.coalesced == 0 and conn.stats.sent == 30


async def test_rt_4_zero_interval_sends_each_at_once(running: RunningGateway) -> None:
    """RT-4: throttle_interval=0 sends every message at once on a fast link, none coalesced."""
    rec = Recorder()
    # max_buffering=60: the server keeps every pending input (latest wins there by default).
    async with await _connect(running, rec=rec, throttle_interval=0, max_buffering=60) as conn:
        for i in range(50):
            await conn.send({"i": i})
        await rec.until(lambda: len(rec.results) == 50)
        assert [r["echo"]["i"] for r in rec.results] == list(range(50))
        assert conn.stats.coalesced == 0


async def test_rt_5_bad_payloads_raise_and_lose_nothing(running: RunningGateway) -> None:
    """RT-5: unencodable/oversized payloads: INVALID_INPUT; non-maps: TypeError; conn lives."""
    rec = Recorder()
    async with await _connect(running, rec=rec, throttle_interval=0, max_frame_bytes=1024) as conn:
        with pytest.raises(RealtimeError) as info:
            await conn.send({"bad": object()})
        assert info.value.code == "INVALID_INPUT" and "cannot encode" in str(info.value)
        with pytest.raises(RealtimeError) as info:
            await conn.send({"big": b"x" * 4096})
        assert info.value.code == "INVALID_INPUT" and "max_frame_bytes" in str(info.value)
        with pytest.raises(TypeError, match="must be a map"):
            await conn.send([1, 2])  # type: ignore[arg-type]
        await conn.send({"ok": True})
        await rec.until(lambda: rec.results)
        assert rec.results == [{"echo": {"ok": True}}] and conn.state is ConnectionState.OPEN


# -- sessions that end normally ---------------------------------------------------------------


async def test_rt_6_timeout_goes_dormant_then_reconnects_lazily(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-6: TIMEOUT + close 1000 -> dormant with no error; the next send reconnects."""
    gateway.add_realtime("test/short", _echo, session_timeout=150 * MS)
    rec = Recorder()
    async with await _connect(running, "test/short", rec, throttle_interval=0) as conn:
        await conn.send({"a": 1})
        await rec.until(lambda: conn.state is ConnectionState.DORMANT)
        assert rec.errors == [] and rec.results == [{"echo": {"a": 1}}]
        await conn.send({"a": 2})
        await rec.until(lambda: len(rec.results) == 2)
        assert rec.results[1] == {"echo": {"a": 2}}
        assert conn.stats.reconnects == 1 and rec.opens == 2 and rec.errors == []
        assert rec.closes == [1000]


async def test_rt_7_handler_error_reported_then_recovery(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-7: a failing handler: on_error INTERNAL_ERROR with the reason; next send recovers."""

    async def picky(value: dict[str, Any]) -> dict[str, Any]:
        if value.get("fail"):
            raise RuntimeError(f"deliberate failure for input {value['n']}")
        return {"ok": value["n"]}

    gateway.add_realtime("test/picky", picky)
    rec = Recorder()
    async with await _connect(running, "test/picky", rec, throttle_interval=0) as conn:
        await conn.send({"fail": True, "n": 1})
        await rec.until(lambda: rec.errors and conn.state is ConnectionState.DORMANT)
        assert rec.errors[0].code == "INTERNAL_ERROR"
        assert str(rec.errors[0]) == "INTERNAL_ERROR: deliberate failure for input 1"
        await conn.send({"n": 2})
        await rec.until(lambda: rec.results)
        assert rec.results == [{"ok": 2}] and len(rec.errors) == 1


async def test_rt_8_streaming_app_across_two_sessions(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-8: a streaming app: items, TIMEOUT, dormant; a second input streams on a new session."""

    @gateway.realtime("test/stream", session_timeout=None)
    async def stream(value: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for i in range(3):
            yield {"run": value["run"], "i": i}

    rec = Recorder()
    async with await _connect(running, "test/stream", rec, throttle_interval=0) as conn:
        await conn.send({"run": 1})
        await rec.until(lambda: conn.state is ConnectionState.DORMANT and len(rec.results) == 3)
        await conn.send({"run": 2})
        await rec.until(lambda: len(rec.results) == 6)
        assert rec.results == [{"run": r, "i": i} for r in (1, 2) for i in range(3)]
        assert rec.errors == [] and rec.opens == 2


async def test_rt_9_meta_frames_go_to_on_meta_not_results(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-9: x-fal-message timings reach on_meta and stats.meta, never on_result."""
    gateway.add_realtime("test/timed", _echo, emit_timings=True)
    rec = Recorder()
    async with await _connect(running, "test/timed", rec, throttle_interval=0) as conn:
        await conn.send({"a": 1})
        await rec.until(lambda: rec.results)
        await eventually(lambda: rec.meta)
        assert rec.results == [{"echo": {"a": 1}}]
        assert rec.meta[0]["action"] == "timings" and conn.stats.meta == 1


async def test_rt_10_json_encoding_is_refused_by_a_fal_runner(running: RunningGateway) -> None:
    """RT-10: encoding='json' sends text frames, which a fal runner answers with INTERNAL_ERROR."""
    rec = Recorder()
    async with await _connect(running, rec=rec, throttle_interval=0, encoding="json") as conn:
        await conn.send({"a": 1})
        await rec.until(lambda: rec.errors)
        assert rec.errors[0].code == "INTERNAL_ERROR"
        assert "text frame" in rec.errors[0].message


# -- lost connections ----------------------------------------------------------------------------


async def test_rt_11_drop_without_close_frame_reconnects_and_delivers_pending(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-11: a drop with no close frame: reconnecting; messages sent meanwhile arrive in order."""
    gateway.set_faults("fal-ai/echo", "drop_after=1;connections=1")
    rec = Recorder()
    policy = ReconnectPolicy(
        max_attempts=None, deadline_s=10, initial_delay_s=20 * MS, max_delay_s=20 * MS
    )
    async with await _connect(
        running, rec=rec, throttle_interval=0, coalesce=False, reconnect=policy
    ) as conn:
        # Every reconnect attempt is refused until the test has queued its messages.
        gateway.set_faults("fal-ai/echo", "reject_status=503")
        await conn.send({"i": 0})
        await rec.until(lambda: ConnectionState.RECONNECTING in rec.states)
        for i in range(1, 6):
            await conn.send({"i": i})
        assert conn.pending == 5
        gateway.set_faults("fal-ai/echo", None)
        await rec.until(lambda: len(rec.results) == 6)
        assert [r["echo"]["i"] for r in rec.results] == list(range(6))
        assert conn.stats.reconnects == 1 and rec.errors == []
        assert rec.states[-1] is ConnectionState.OPEN


@pytest.mark.parametrize("mode", ["abort", "close;close_code=1000", "close;close_code=1011"])
async def test_rt_12_accept_then_close_gives_bounded_attempts(
    gateway: Gateway, running: RunningGateway, mode: str
) -> None:
    """RT-12: a server that accepts then closes: bounded attempts, then failed + CONNECTION_LOST."""
    gateway.set_faults("fal-ai/echo", f"drop_after=0;drop_mode={mode}")
    attempts = count_handshakes(gateway)
    rec = Recorder()
    policy = ReconnectPolicy(max_attempts=4, deadline_s=None, initial_delay_s=10 * MS)
    conn = await _connect(running, rec=rec, throttle_interval=0, reconnect=policy, lazy=True)
    try:
        await conn.send({"i": 0})
        await rec.until(lambda: conn.state is ConnectionState.FAILED)
        assert attempts() == 4
        assert [e.code for e in rec.errors] == ["CONNECTION_LOST"]
        assert conn.stats.dropped == {"failed": 1}
        with pytest.raises(RealtimeError) as info:
            await conn.send({"i": 1})
        assert info.value.code == "CONNECTION_LOST"
    finally:
        await conn.close()
    # The barrier: close() has awaited every task the connection owned, so no attempt is
    # on its way or can start: nothing came after giving up (no tight loop).
    assert attempts() == 4
    after_failed = rec.states[rec.states.index(ConnectionState.FAILED) :]
    assert ConnectionState.RECONNECTING not in after_failed


@pytest.mark.parametrize("status", [429, 502, 503])
async def test_rt_13_handshake_5xx_429_are_retried_pending_kept(
    gateway: Gateway, running: RunningGateway, instant_retries: None, status: int
) -> None:
    """RT-13: handshake 5xx/429 are retried; what waited goes out first, in order, once open."""
    gateway.set_faults("fal-ai/echo", f"reject_status={status};connections=3")
    rec = Recorder()
    conn = await _connect(running, rec=rec, throttle_interval=0, coalesce=False, lazy=True)
    try:
        for i in range(3):
            await conn.send({"i": i})
        await rec.until(lambda: len(rec.results) == 3)
        assert [r["echo"]["i"] for r in rec.results] == [0, 1, 2]
        assert rec.errors == []
    finally:
        await conn.close()


async def test_rt_14_unknown_app_fails_at_once_without_retries(running: RunningGateway) -> None:
    """RT-14: a handshake 404 (unknown app) raises INVALID_INPUT from connect, no retry."""
    with pytest.raises(RealtimeError) as info:
        await _connect(running, "nobody/nothing")
    assert info.value.code == "INVALID_INPUT" and info.value.status == 404
    assert "check the app id" in info.value.message


async def test_rt_15_rate_limited_backs_off_the_interval(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-15: RATE_LIMITED is reported, the socket stays open, the interval doubles."""
    rec = Recorder()
    async with await _connect(
        running, rec=rec, throttle_interval=10 * MS, query={"fal_faults": "rate_limit_every=2"}
    ) as conn:
        await conn.send({"i": 0})
        await rec.until(lambda: rec.results)
        await conn.send({"i": 1})
        await rec.until(lambda: rec.errors)
        assert rec.errors[0].code == "RATE_LIMITED"
        assert conn.state is ConnectionState.OPEN
        assert conn.throttle_interval >= 50 * MS  # doubled, at least the floor
        await conn.send({"i": 2})
        await rec.until(lambda: len(rec.results) == 2)


# -- callbacks ------------------------------------------------------------------------------------


async def test_rt_16_raising_callback_is_reported_and_connection_lives(
    running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """RT-16: on_result raising -> on_error CALLBACK_ERROR, logged; later results still arrive."""
    rec = Recorder()
    seen: list[Any] = []

    def explode(value: Any) -> None:
        seen.append(value)
        if len(seen) == 1:
            raise ValueError("user bug")

    with caplog.at_level(logging.ERROR, logger="fal_realtime"):
        async with await _connect(running, rec=rec, throttle_interval=0, on_result=explode) as conn:
            await conn.send({"i": 0})
            await rec.until(lambda: rec.errors)
            await conn.send({"i": 1})
            await eventually(lambda: len(seen) >= 2)
    assert rec.errors[0].code == "CALLBACK_ERROR" and "user bug" in rec.errors[0].message
    assert conn.stats.errors == 1
    assert any("on_result callback raised" in r.getMessage() for r in caplog.records)


async def test_rt_17_slow_callback_never_stalls_reading(running: RunningGateway) -> None:
    """RT-17: a slow async callback: the reader keeps up; overflow drops the oldest, counted."""
    delivered: list[int] = []
    release = asyncio.Event()

    async def slow(value: Any) -> None:
        await release.wait()  # as slow as the test says: until every result was read
        delivered.append(value["echo"]["i"])

    async with await _connect(
        running, throttle_interval=0, coalesce=False, on_result=slow, max_backlog=4
    ) as conn:
        for i in range(20):
            await conn.send({"i": i})
        await eventually(lambda: conn.stats.results >= 20)
        # All 20 were read off the socket while the callback had finished none.
        assert delivered == []
        release.set()
        await eventually(lambda: len(delivered) + conn.stats.dropped.get("slow_consumer", 0) >= 20)
    assert delivered == sorted(delivered) and delivered[-1] == 19
    assert conn.stats.dropped["slow_consumer"] == 20 - len(delivered) > 0


async def test_rt_18_async_and_sync_callbacks_and_lifecycle_order(
    running: RunningGateway,
) -> None:
    """RT-18: async and plain callbacks both run; states go connecting->open->closed in order."""
    events: list[str] = []

    async def on_result(value: Any) -> None:
        events.append("result")

    conn = await _connect(
        running,
        throttle_interval=0,
        on_result=on_result,
        on_open=lambda: events.append("open"),
        on_close=lambda code: events.append(f"close:{code}"),
        on_state_change=lambda state: events.append(f"state:{state.value}"),
    )
    await conn.send({"x": 1})
    await eventually(lambda: "result" in events)
    await conn.close()
    assert events == ["state:open", "open", "result", "close:1000", "state:closed"]


async def test_rt_19_results_and_states_iterators(running: RunningGateway) -> None:
    """RT-19: async for over conn.results() and conn.states() (pull style); both end at close."""
    conn = await _connect(running, throttle_interval=0, lazy=True)
    states = conn.states()
    await conn.send({"n": 0})
    got = []
    async with asyncio.timeout(WAIT):
        async for result in conn.results():
            got.append(result["echo"]["n"])
            if len(got) == 3:
                break
            await conn.send({"n": len(got)})
    await conn.close()
    assert got == [0, 1, 2]
    seen = [state async for state in states]
    assert seen == [ConnectionState.OPEN, ConnectionState.CLOSED]


# -- lifecycle -------------------------------------------------------------------------------------


async def test_rt_20_connection_key_reuses_the_live_connection(running: RunningGateway) -> None:
    """RT-20: same connection_key -> same object with the newest callbacks; forgotten at close."""
    first: list[Any] = []
    second: list[Any] = []
    a = await _connect(running, connection_key="user-1", on_result=first.append)
    b = await _connect(running, connection_key="user-1", on_result=second.append)
    try:
        assert a is b
        await b.send({"k": 1})
        await eventually(lambda: second)
        assert first == [] and second == [{"echo": {"k": 1}}]
        with pytest.raises(ValueError, match="in use for"):
            await _connect(running, "fal-ai/flux-lora-realtime", connection_key="user-1")
    finally:
        await a.close()
    c = await _connect(running, connection_key="user-1")
    assert c is not a
    await c.close()


async def test_rt_21_close_during_connecting_and_reconnecting(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-21: close() while connecting or reconnecting returns promptly, leaves no task behind."""
    gateway.set_faults("fal-ai/echo", "reject_status=503")
    upgrades = count_upgrades(gateway)
    # Waits of up to 30 s between attempts: a close() that waited one out would (most
    # likely) outlast WAIT, which only bounds the test.
    slow_policy = ReconnectPolicy(
        max_attempts=None, deadline_s=120, initial_delay_s=30, max_delay_s=30
    )
    conn = await _connect(running, reconnect=slow_policy, lazy=True)
    await conn.send({"i": 0})
    await eventually(lambda: upgrades() == 1)  # refused once: waiting to retry
    assert conn.state is ConnectionState.CONNECTING
    async with asyncio.timeout(WAIT):
        await conn.close()
    assert conn.state is ConnectionState.CLOSED and conn.stats.dropped == {"closed": 1}

    # A connect() cancelled while it is opening cleans up after itself.
    task = asyncio.create_task(_connect(running, reconnect=slow_policy))
    await eventually(lambda: upgrades() == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    gateway.set_faults("fal-ai/echo", "drop_after=1;connections=1")
    rec = Recorder()
    conn = await _connect(running, rec=rec, throttle_interval=0, reconnect=slow_policy)
    gateway.set_faults("fal-ai/echo", "reject_status=503")
    await conn.send({"i": 0})
    await rec.until(lambda: ConnectionState.RECONNECTING in rec.states)
    async with asyncio.timeout(WAIT):
        await conn.close()
    assert conn.state is ConnectionState.CLOSED
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("fal-realtime")]
    assert leftover == []


async def test_rt_22_close_is_idempotent_and_send_after_close_raises(
    running: RunningGateway,
) -> None:
    """RT-22: close() twice is fine; send after close raises CONNECTION_LOST saying what to do."""
    conn = await _connect(running)
    await conn.close()
    await conn.close()
    with pytest.raises(RealtimeError) as info:
        await conn.send({"late": True})
    assert info.value.code == "CONNECTION_LOST" and "fal_realtime.connect()" in str(info.value)
    assert isinstance(info.value, ConnectionError)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"app": "not-an-app"}, ValueError),
        ({"app": "fal-ai/echo", "throttle_interval": -1}, ValueError),
        ({"app": "fal-ai/echo", "max_buffering": 0}, ValueError),
        ({"app": "fal-ai/echo", "max_buffering": 61}, ValueError),
        ({"app": "fal-ai/echo", "encoding": "xml"}, ValueError),
        ({"app": "fal-ai/echo", "reconnect": "sometimes"}, TypeError),
    ],
)
async def test_rt_23_bad_arguments_fail_before_io(kwargs: dict[str, Any], error: type) -> None:
    """RT-23: bad app id, interval, buffering, encoding or reconnect raise at the call."""
    app = kwargs.pop("app")
    with pytest.raises(error):
        await fal_realtime.connect(app, base_url="ws://127.0.0.1:9", key="k", **kwargs)


async def test_rt_24_max_buffering_reaches_the_server(
    gateway: Gateway, running: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RT-24: max_buffering=1 makes the server keep only the newest pending input."""
    release, started = asyncio.Event(), asyncio.Event()
    seen: list[int] = []

    async def gate(value: dict[str, Any]) -> dict[str, Any]:
        seen.append(value["i"])
        if value["i"] == 0:
            started.set()
            await release.wait()
        return value

    gateway.add_realtime("test/gate", gate)
    frames = FramesRead(monkeypatch)
    rec = Recorder()
    async with await _connect(
        running, "test/gate", rec, throttle_interval=0, coalesce=False, max_buffering=1
    ) as conn:
        await conn.send({"i": 0})
        async with asyncio.timeout(WAIT):
            await started.wait()
        for i in range(1, 5):
            await conn.send({"i": i})
        await frames.until(5)  # the server holds inputs 1..4 while input 0 is busy
        release.set()
        await rec.until(lambda: len(rec.results) == 2)
        assert rec.results == [{"i": 0}, {"i": 4}]
    assert seen == [0, 4]  # 1..3 were dropped by the server, never handled


async def test_rt_25_healthy_heartbeat_keeps_the_socket(
    running: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RT-25: an idle socket with a 50 ms heartbeat is pinged, the pongs keep it open."""
    seen = FramesRead(monkeypatch)
    rec = Recorder()
    async with await _connect(running, rec=rec, heartbeat_s=50 * MS, throttle_interval=0) as conn:
        await seen.until(pongs=3)  # three pings answered: three idle intervals survived
        assert conn.state is ConnectionState.OPEN and rec.opens == 1
        assert conn.stats.reconnects == 0 and rec.closes == []
        await conn.send({"alive": True})
        await rec.until(lambda: rec.results)
    assert rec.errors == []


async def test_rt_26_repr_and_errors_keep_the_key_out(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-26: repr(conn) names app and state; errors raised or reported never show the key."""
    async with await _connect(running) as conn:
        text = repr(conn)
    assert "fal-ai/echo" in text and "open" in text and KEY not in text
    wrong = "wrong-key-id:wrong-key-secret"
    shown: list[str] = []
    for options in ({"use_jwt": False}, {"use_jwt": True}):
        with pytest.raises(RealtimeError) as info:
            await fal_realtime.connect("fal-ai/echo", base_url=running.ws_url, key=wrong, **options)
        assert info.value.code == "UNAUTHORIZED"
        shown += [str(info.value), repr(info.value), repr(info.value.body)]
    # A refusal reported to on_error (after connect() returned) names no token either.
    gateway.set_faults("fal-ai/echo", "refuse_auth=1")
    rec = Recorder()
    conn = await _connect(running, rec=rec, lazy=True)
    try:
        await conn.send({"n": 1})
        await rec.until(lambda: conn.state is ConnectionState.FAILED)
    finally:
        await conn.close()
    assert [e.code for e in rec.errors] == ["UNAUTHORIZED"]
    shown += [str(e) for e in rec.errors] + [repr(e) for e in rec.errors] + [repr(conn)]
    text = "\n".join(shown)
    assert wrong not in text and "wrong-key-secret" not in text and KEY not in text
    assert "fal_jwt_token=" not in text.replace("fal_jwt_token=***", "")


async def test_rt_27_missed_pong_is_a_lost_connection(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-27: a peer that stops answering pings is declared lost (1006) and reconnected."""
    gateway.set_faults("fal-ai/echo", "ignore_pings=1;connections=1")
    rec = Recorder()
    async with await _connect(running, rec=rec, heartbeat_s=50 * MS, throttle_interval=0) as conn:
        await rec.until(lambda: len(rec.closes) == 1 and conn.state is ConnectionState.OPEN)
        assert rec.closes == [1006]
        assert ConnectionState.RECONNECTING in rec.states and conn.stats.reconnects == 1
        await conn.send({"after": "pong"})
        await rec.until(lambda: rec.results)
    assert rec.results == [{"echo": {"after": "pong"}}] and rec.errors == []


async def test_rt_28_abandoned_results_iterator_unsubscribes(running: RunningGateway) -> None:
    """RT-28: an async for over results() left with break stops receiving (no accumulation)."""
    async with await _connect(
        running, throttle_interval=0, max_backlog=1, max_buffering=60
    ) as conn:
        for n in range(3):
            await conn.send({"n": n})
            results = conn.results()
            async with asyncio.timeout(WAIT):
                async for _ in results:
                    break
            await results.aclose()  # what the garbage collector does for an abandoned loop
        # A subscriber that keeps nothing read holds max_backlog=1: of two results, it
        # drops one. Only this control subscriber may count a drop, not the three above.
        control = conn.results()
        for n in (3, 4):
            await conn.send({"n": n})
        await eventually(lambda: conn.stats.results == 5)
        assert conn.stats.dropped == {"results": 1}
        del control


async def test_rt_29_token_endpoint_outage_is_retried(
    gateway: Gateway, running: RunningGateway, instant_retries: None
) -> None:
    """RT-29: a token endpoint failing with 503 twice is retried; the third fetch opens."""
    from aiohttp import web

    failures = [2]
    original = gateway.tokens.issue

    def flaky(*args: Any, **kwargs: Any) -> str:
        if failures[0] > 0:
            failures[0] -= 1
            raise web.HTTPServiceUnavailable()
        return original(*args, **kwargs)

    gateway.tokens.issue = flaky  # type: ignore[method-assign]
    rec = Recorder()
    async with await _connect(running, rec=rec, throttle_interval=0, use_jwt=True) as conn:
        await conn.send({"after": "outage"})
        await rec.until(lambda: rec.results)
    assert failures == [0] and rec.errors == []


async def test_rt_30_unreachable_token_endpoint_fails_after_the_policy(
    instant_retries: None,
) -> None:
    """RT-30: an unreachable gateway: connect retries per policy, then CONNECTION_LOST."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = ReconnectPolicy(max_attempts=3, deadline_s=None)
    with pytest.raises(RealtimeError) as info:
        await fal_realtime.connect(
            "fal-ai/echo", base_url=f"ws://127.0.0.1:{port}", key=KEY, reconnect=policy
        )
    assert info.value.code == "CONNECTION_LOST" and "gave up" in info.value.message


async def test_rt_31_an_interrupted_close_still_completes(running: RunningGateway) -> None:
    """RT-31: close() cancelled midway: the close finishes anyway; close() again just waits."""
    states: list[ConnectionState] = []
    conn = await _connect(running, on_state_change=states.append)
    closing = asyncio.create_task(conn.close())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await conn.close()
    assert conn.state is ConnectionState.CLOSED and shared_session() is None
    assert states[-1] is ConnectionState.CLOSED


async def test_rt_32_an_unused_results_iterator_is_not_kept(running: RunningGateway) -> None:
    """RT-32: results() called but never iterated holds nothing once the caller drops it."""
    import gc

    async with await _connect(
        running, throttle_interval=0, max_backlog=1, max_buffering=60
    ) as conn:
        unused = conn.results()
        control = conn.results()  # kept: it drops one of every two results past the first
        del unused
        gc.collect()
        for n in range(3):
            await conn.send({"n": n})
        await eventually(lambda: conn.stats.results == 3)
        # The control alone dropped two; a kept `unused` would have dropped two more.
        assert conn.stats.dropped == {"results": 2}
        del control


async def test_rt_policy_10_user_strategies_drive_a_live_outage(
    instant_retries: None,
) -> None:
    """RT-POLICY-10: a live outage is retried as the user's tenacity strategies say, then fails."""
    import socket

    import tenacity

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    asked: list[int] = []

    def wait(state: tenacity.RetryCallState) -> float:
        asked.append(state.attempt_number)
        return 30.0  # instant under set_testing, as every wait is

    policy = ReconnectPolicy(stop=tenacity.stop_after_attempt(4), wait=wait)
    with pytest.raises(RealtimeError) as info:
        await fal_realtime.connect(
            "fal-ai/echo", base_url=f"ws://127.0.0.1:{port}", key=KEY, reconnect=policy
        )
    assert info.value.code == "CONNECTION_LOST" and "gave up" in info.value.message
    assert asked == [1, 2, 3, 4]
