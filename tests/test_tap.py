"""RT-TAP: data frames taken as aiohttp parses them (``fal_realtime/_aiohttp_private.py``).

The tap reads private aiohttp state; these tests fail when the installed aiohttp no
longer offers it (the tap would quietly stop being used), check that what the tap
delivers, and what it leaves to the reading task, arrives whole and in order, with the
tap and without it (uvloop, older aiohttp), and prove the fallbacks: a message queue of
another shape (aiohttp 4.0's, written out below) met while tapping or when attaching
leaves the socket to the task's plain ``receive()``, with nothing lost. All over real
sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import Any, NamedTuple

import aiohttp
import ormsgpack
import pytest
from aiohttp import web
from aiohttp.streams import EofStream

import fal_realtime
from fal_realtime import ConnectionState, RealtimeError, _aiohttp_private, _link
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.proxy import FaultProxy

from .conftest import KEY, MS
from .gateway_tools import eventually


def _tappable_here() -> bool:
    """Tell whether the tap should be in use: a new enough aiohttp on asyncio's own loop."""
    return _aiohttp_private.SUPPORTED and isinstance(
        asyncio.get_running_loop(), asyncio.BaseEventLoop
    )


@pytest.fixture(params=["tapped", "task-read"])
def tap_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the tap where it applies, and with the task reading everything."""
    if request.param == "task-read":
        monkeypatch.setattr(_link, "frame_tap", lambda ws, on_data: None)
    yield request.param


def _scripted_gateway(pongs: list[bytes], closes: list[int | None]) -> Gateway:
    """Serve test/script: on the first input, results 1-3 around a ping; 4 after the pong."""
    gateway = Gateway(keys=[KEY], heartbeat_s=None)

    async def script(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.receive()  # the first input
        await ws.send_bytes(ormsgpack.packb({"n": 1}))
        await ws.ping(b"tap")
        await ws.send_bytes(ormsgpack.packb({"n": 2}))
        await ws.send_str('{"n": 3}')  # a text frame: JSON, classified on the way
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.PONG:
                pongs.append(msg.data)
                await ws.send_bytes(ormsgpack.packb({"n": 4}))
        closes.append(ws.close_code)
        return ws

    gateway.add_routes([web.get("/test/script/realtime", script)])
    return gateway


async def test_rt_tap_1_a_live_socket_is_tapped_with_the_installed_aiohttp(
    running: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RT-TAP-1: a live socket is tapped, and stays tapped, with the installed aiohttp."""
    taps = _record_taps(monkeypatch)
    tasks: list[asyncio.Task[Any] | None] = []
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=lambda result: tasks.append(asyncio.current_task()),
        base_url=running.ws_url,
        key=KEY,
        use_jwt=False,
    )
    try:
        for n in range(3):
            await conn.send({"n": n})
            await eventually(lambda n=n: len(tasks) == n + 1)
        [tap] = taps
        if _tappable_here():  # asyncio's own loop (the uvloop session reads by task)
            assert tap is not None, "the installed aiohttp's socket was not tapped"
            assert tap.tapping, "the tap fell back on the installed aiohttp's queue"
            assert tasks[1:] == [None, None]  # from data_received, not the task
        else:
            assert tap is None
    finally:
        await conn.close()


async def test_rt_tap_2_results_come_from_data_received_where_the_tap_applies(
    running: RunningGateway,
) -> None:
    """RT-TAP-2: on asyncio's loop a result reaches on_result from data_received, not a task."""
    tasks: list[asyncio.Task[Any] | None] = []
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=lambda result: tasks.append(asyncio.current_task()),
        base_url=running.ws_url,
        key=KEY,
        use_jwt=False,
    )
    try:
        for n in range(3):
            await conn.send({"n": n})
            await eventually(lambda n=n: len(tasks) == n + 1)
    finally:
        await conn.close()
    # The first result after the handshake comes through the task's receive(); the
    # rest come straight from the protocol when the tap applies.
    assert (tasks[1:] == [None, None]) is _tappable_here()


async def test_rt_tap_3_data_and_control_frames_keep_their_order(tap_mode: str) -> None:
    """RT-TAP-3: results around a ping arrive whole and in order; the ping is answered."""
    pongs: list[bytes] = []
    closes: list[int | None] = []
    results: list[Any] = []
    async with _scripted_gateway(pongs, closes).serve(port=0) as running:
        conn = await fal_realtime.connect(
            "test/script",
            on_result=results.append,
            base_url=running.ws_url,
            key=KEY,
            use_jwt=False,
        )
        try:
            await conn.send({"go": True})
            await eventually(lambda: len(results) == 4)
        finally:
            await conn.close()
        await eventually(lambda: closes != [])
    assert results == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert pongs == [b"tap"]
    assert closes == [1000]  # the client's close handshake stays clean with the tap
    assert conn.stats.errors == 0


async def test_rt_tap_4_a_dropped_socket_wakes_the_tapped_reader(tap_mode: str) -> None:
    """RT-TAP-4: a socket the server drops mid-session is noticed at once and reopened."""
    sockets: list[web.WebSocketResponse] = []
    gateway = Gateway(keys=[KEY], heartbeat_s=None)

    async def drop_after_one(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)
        async for msg in ws:
            await ws.send_bytes(ormsgpack.packb({"socket": len(sockets)}))
            if len(sockets) == 1:
                assert request.transport is not None
                request.transport.abort()  # no close frame: the stream just ends
                break
            del msg
        return ws

    gateway.add_routes([web.get("/test/drop/realtime", drop_after_one)])
    results: list[Any] = []
    async with gateway.serve(port=0) as running:
        conn = await fal_realtime.connect(
            "test/drop",
            on_result=results.append,
            base_url=running.ws_url,
            key=KEY,
            use_jwt=False,
            heartbeat_s=None,  # only the end of the stream can tell the reader
        )
        try:
            await conn.send({"n": 1})
            await eventually(lambda: conn.stats.reconnects == 1)
            await conn.send({"n": 2})
            await eventually(lambda: len(results) == 2)
        finally:
            await conn.close()
    assert results == [{"socket": 1}, {"socket": 2}]


async def test_rt_tap_5_a_lost_link_is_dropped_without_waiting_for_a_close_handshake(
    proxy: FaultProxy, tap_mode: str
) -> None:
    """RT-TAP-5: a missed pong drops the socket at once, tapped or not (no close handshake wait)."""
    states: list[ConnectionState] = []
    results: list[Any] = []
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        base_url=proxy.ws_url,
        key=KEY,
        use_jwt=False,
        heartbeat_s=80 * MS,
        close_timeout_s=30.0,  # a close handshake on the dead link would wait this long
        on_state_change=states.append,
        on_result=results.append,
    )
    try:
        # One result first: the reader then waits where it waits for good (in the tap,
        # where the tap applies), not in the receive() the handshake began.
        await conn.send({"before": "stall"})
        await eventually(lambda: len(results) == 1)
        proxy.stall()  # until resumed: nothing either way
        # Lost after 80 + 40 ms of silence; well within 2 s unless the close waits 30 s.
        await eventually(lambda: ConnectionState.RECONNECTING in states, within=2.0)
        proxy.resume()
        await eventually(lambda: states[-1] is ConnectionState.OPEN)
    finally:
        await conn.close()
    assert conn.stats.reconnects == 1


# -- the fallbacks: message queues of another shape ----------------------------------------


class _Message4(NamedTuple):
    """A message as aiohttp master (4.0) queues it: one class per kind there, all this shape."""

    data: Any
    size: int
    extra: str | None
    type: aiohttp.WSMsgType

    def json(self, *, loads: Callable[[Any], Any] = json.loads) -> Any:
        """Return the data parsed as JSON (as aiohttp's messages do)."""
        return loads(self.data)


class _Queue:
    """A socket's message queue of another shape, as far as its readers can tell.

    By default aiohttp 4.0's (``_websocket/reader_py.py`` on aiohttp master): the
    messages themselves in ``_buffer``, each carrying its size, instead of aiohttp 3's
    ``(message, size)`` pairs. ``pairs=True`` keeps aiohttp 3's entries; ``read_waits``
    makes ``read()`` wait a loop pass even with a message buffered; ``read_copies`` makes
    it return a copy of the message at the head; ``container`` is the buffer's type.
    """

    def __init__(
        self,
        *,
        pairs: bool = False,
        read_waits: bool = False,
        read_copies: bool = False,
        container: type = deque,
    ) -> None:
        self._buffer: Any = container()
        self._pairs = pairs
        self._read_waits = read_waits
        self._read_copies = read_copies
        self._eof = False
        self._exception: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def is_eof(self) -> bool:
        """Tell whether the stream ended."""
        return self._eof

    def exception(self) -> BaseException | None:
        """Return what ended the stream, if it failed."""
        return self._exception

    def set_exception(self, exc: BaseException, exc_cause: object = None) -> None:
        """End the stream with ``exc``."""
        self._eof, self._exception = True, exc
        self._release()

    def feed_eof(self) -> None:
        """End the stream."""
        self._eof = True
        self._release()

    def feed_data(self, msg: Any, size: int = 0) -> None:
        """Queue ``msg`` (aiohttp 3's message) in this queue's shape."""
        if self._pairs:
            self._buffer.append((msg, size))
        else:
            self._buffer.append(_Message4(msg.data, size, msg.extra, msg.type))
        self._release()

    def _release(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> Any:
        """Return the next message, waiting for one."""
        if self._read_waits:
            await asyncio.sleep(0)
        if not self._buffer and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._buffer:
            buffer = self._buffer
            entry = buffer.pop(0) if isinstance(buffer, list) else buffer.popleft()
            msg = entry[0] if self._pairs else entry
            return aiohttp.WSMessage(*msg) if self._read_copies else msg
        if self._exception is not None:
            raise self._exception
        raise EofStream


class _Requeue:
    """Stand in for a socket's parser: aiohttp's parses, what it parsed goes to ``target``."""

    def __init__(self, parser: Any, source: Any, target: _Queue) -> None:
        self._parser, self._source, self._target = parser, source, target

    def feed_data(self, data: bytes) -> Any:
        """Parse ``data`` with aiohttp's parser; re-queue its messages."""
        result = self._parser.feed_data(data)
        self._drain()
        return result

    def feed_eof(self) -> None:
        """End the stream (the connection was lost)."""
        self._parser.feed_eof()
        self._drain()

    def _drain(self) -> None:
        source, target = self._source, self._target
        while source._buffer:
            reading = source.read()
            try:
                reading.send(None)
            except StopIteration as done:  # buffered: read() returns at once
                target.feed_data(done.value, 0)
            else:
                reading.close()
                raise AssertionError("aiohttp's queue waited with a message buffered")
        if source.is_eof() and not target.is_eof():
            error = source.exception()
            if error is None:
                target.feed_eof()
            else:
                target.set_exception(error)


def _requeue(ws: aiohttp.ClientWebSocketResponse, target: _Queue) -> None:
    """Make ``target`` the queue ``ws`` reads its messages from (fed by aiohttp's parser)."""
    protocol: Any = ws._response.connection.protocol  # type: ignore[union-attr]
    protocol._payload_parser = _Requeue(protocol._payload_parser, ws._reader, target)
    protocol._payload = target
    ws._reader = target  # type: ignore[assignment]


def _record_taps(
    monkeypatch: pytest.MonkeyPatch,
    prepare: Callable[[aiohttp.ClientWebSocketResponse], None] | None = None,
) -> list[_aiohttp_private.FrameTap | None]:
    """Return the list of what frame_tap() answers, socket by socket.

    ``prepare`` runs on each socket before anything reads it (before its handshake's
    frames are read).
    """
    taps: list[_aiohttp_private.FrameTap | None] = []
    prepared: list[aiohttp.ClientWebSocketResponse] = []
    receive_now, frame_tap = _link.receive_now, _link.frame_tap

    def preparing(ws: aiohttp.ClientWebSocketResponse) -> Any:
        if prepare is not None and all(ws is not seen for seen in prepared):
            prepared.append(ws)
            prepare(ws)
        return receive_now(ws)

    def recording(ws: aiohttp.ClientWebSocketResponse, on_data: Any) -> Any:
        taps.append(frame_tap(ws, on_data))
        return taps[-1]

    monkeypatch.setattr(_link, "receive_now", preparing)
    monkeypatch.setattr(_link, "frame_tap", recording)
    return taps


@pytest.fixture
def fallbacks(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], list[logging.LogRecord]]:
    """Return a function listing the fallbacks logged during the test (each once, DEBUG)."""
    monkeypatch.setattr(_aiohttp_private, "_logged", set())  # as in a fresh process
    caplog.set_level(logging.DEBUG, logger="fal_realtime")
    return lambda: [
        r for r in caplog.records if "read with ws.receive() instead" in r.getMessage()
    ]


async def _scripted_session(
    results: list[Any], tasks: list[asyncio.Task[Any] | None]
) -> tuple[list[RealtimeError], list[bytes], list[int | None]]:
    """Run test/script's session (results 1-4 around a ping); return errors, pongs, closes."""
    pongs: list[bytes] = []
    closes: list[int | None] = []
    errors: list[RealtimeError] = []

    def on_result(result: Any) -> None:
        results.append(result)
        tasks.append(asyncio.current_task())

    async with _scripted_gateway(pongs, closes).serve(port=0) as running:
        conn = await fal_realtime.connect(
            "test/script",
            on_result=on_result,
            on_error=errors.append,
            base_url=running.ws_url,
            key=KEY,
            use_jwt=False,
        )
        try:
            await conn.send({"go": True})
            await eventually(lambda: len(results) == 4)
        finally:
            await conn.close()
        await eventually(lambda: closes != [])
    assert conn.stats.errors == 0
    return errors, pongs, closes


@pytest.mark.parametrize("shape", ["aiohttp-4.0", "read-waits", "read-copies"])
async def test_rt_tap_6_a_queue_of_another_shape_met_while_tapping_falls_back_to_the_task(
    shape: str, monkeypatch: pytest.MonkeyPatch, fallbacks: Callable[[], list[logging.LogRecord]]
) -> None:
    """RT-TAP-6: aiohttp 4.0's queue met while tapping: the task reads on, every result in order."""
    if not _tappable_here():
        pytest.skip("the tap applies on asyncio's own loop with aiohttp >= 3.10.11")
    # The others keep aiohttp 3's pairs, with a read() that does not return at once or
    # does not return the message at the head.
    queue = {
        "aiohttp-4.0": _Queue(),
        "read-waits": _Queue(pairs=True, read_waits=True),
        "read-copies": _Queue(pairs=True, read_copies=True),
    }[shape]
    taps = _record_taps(monkeypatch, lambda ws: _requeue(ws, queue))
    results: list[Any] = []
    tasks: list[asyncio.Task[Any] | None] = []
    errors, pongs, closes = await _scripted_session(results, tasks)
    assert results == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert errors == []
    assert pongs == [b"tap"] and closes == [1000]
    [tap] = taps
    assert tap is not None, "the queue's shape was recognised when the tap attached"
    assert not tap.tapping, "the tap fell back when it met the queue's entries"
    assert None not in tasks  # every result came through the task's receive()
    [logged] = fallbacks()
    assert logged.levelno == logging.DEBUG


@pytest.mark.parametrize("shape", ["list-buffer", "protocol-already-wrapped"])
async def test_rt_tap_7_a_shape_unknown_when_attaching_leaves_the_socket_to_the_task(
    shape: str, monkeypatch: pytest.MonkeyPatch, fallbacks: Callable[[], list[logging.LogRecord]]
) -> None:
    """RT-TAP-7: a queue or protocol of unknown shape is not tapped: the task reads everything."""
    if not _tappable_here():
        pytest.skip("the tap applies on asyncio's own loop with aiohttp >= 3.10.11")

    def prepare(ws: aiohttp.ClientWebSocketResponse) -> None:
        if shape == "list-buffer":
            _requeue(ws, _Queue(pairs=True, container=list))
        else:  # another library's wrapper already in place
            protocol: Any = ws._response.connection.protocol  # type: ignore[union-attr]
            protocol.data_received = protocol.data_received

    taps = _record_taps(monkeypatch, prepare)
    results: list[Any] = []
    tasks: list[asyncio.Task[Any] | None] = []
    errors, pongs, closes = await _scripted_session(results, tasks)
    assert taps == [None]
    assert results == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert errors == []
    assert pongs == [b"tap"] and closes == [1000]
    assert None not in tasks
    [logged] = fallbacks()
    assert logged.levelno == logging.DEBUG


class _NotACoroutine:
    """An awaitable that is not a coroutine (what a changed ``ws.receive()`` might return)."""

    def __init__(self, coro: Any) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._coro.__await__()  # type: ignore[no-any-return]


async def test_rt_tap_8_receive_now_hands_back_a_receive_that_is_not_a_coroutine(
    running: RunningGateway,
    monkeypatch: pytest.MonkeyPatch,
    fallbacks: Callable[[], list[logging.LogRecord]],
) -> None:
    """RT-TAP-8: a ws.receive() that is not a coroutine is awaited as it is: results flow."""
    made: list[_NotACoroutine] = []
    handed: list[Any] = []
    receive, receive_now = aiohttp.ClientWebSocketResponse.receive, _link.receive_now

    def receiving(ws: aiohttp.ClientWebSocketResponse, timeout: float | None = None) -> Any:
        made.append(_NotACoroutine(receive(ws, timeout)))
        return made[-1]

    def recording(ws: aiohttp.ClientWebSocketResponse) -> Any:
        handed.append(receive_now(ws))
        return handed[-1]

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "receive", receiving)
    monkeypatch.setattr(_link, "receive_now", recording)
    results: list[Any] = []
    errors: list[RealtimeError] = []
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=results.append,
        on_error=errors.append,
        base_url=running.ws_url,
        key=KEY,
        use_jwt=False,
    )
    try:
        for n in range(3):
            await conn.send({"n": n})
            await eventually(lambda n=n: len(results) == n + 1)
    finally:
        await conn.close()
    assert handed[0] is made[0]  # handed back as it was, then awaited
    assert results == [{"echo": {"n": n}} for n in range(3)]
    assert errors == []
    [logged] = fallbacks()
    assert logged.levelno == logging.DEBUG
