"""Server-streaming, client-streaming and bidirectional sessions, as fal's runner runs them.

fal 1.83.0, ``fal/realtime.py`` lines 305-446 (and 546-567 for the end of every session):

- **server streaming**: the first input (waited for up to ``session_timeout``) is the
  session's only one; each item the handler yields is a frame (a sync iterator is advanced
  in a worker thread); with ``emit_timings`` one timings frame follows the last item.
  Inputs sent meanwhile are read and ignored, as the runner never reads them.
- **client streaming**: the handler gets ``inputs``, an async iterator that ends when no
  input came for ``session_timeout`` after the handler asked for the next one (or when the
  client closes); its one return value is the frame.
- **bidirectional**: the same ``inputs``; each item the handler yields is a frame, while
  inputs keep arriving.

Then TIMEOUT and close 1000; a raising handler gets INTERNAL_ERROR and close 1000. A bad
frame (not binary msgpack, not a map) raises :class:`~fal_realtime._protocol.runner.InputError`
from ``inputs`` where the handler reaches it (so, unless the handler catches it,
INTERNAL_ERROR), after which ``inputs`` is over. A reader task always runs, so that
closes and heartbeats are seen; inputs wait for the handler in a bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

from aiohttp import WSMsgType

from .._cycles import stop_task
from .._protocol.runner import InputError, decode_input
from .modes import RealtimeMode
from .realtime_wire import TIMEOUT, Ending, SessionOver, SessionWire
from .registry import RealtimeApp

__all__ = ["StreamingSession"]

#: Inputs read but not yet taken by the handler; past it the reader waits (back-pressure).
MAX_QUEUED_INPUTS = 1024


class _Closed:
    """Queued when the client has gone: the inputs end after what came before."""


_CLOSED = _Closed()
_DONE = object()


class Inputs:
    """The inputs of a streaming session: an async iterator, as fal's runner gives.

    Items are the input maps, or built into the handler's input model when it has one.
    """

    def __init__(self, timeout_s: float | None, build: Callable[[dict[str, Any]], Any]) -> None:
        self._timeout_s = timeout_s
        self._build = build
        self._queue: asyncio.Queue[dict[str, Any] | InputError | _Closed] = asyncio.Queue(
            MAX_QUEUED_INPUTS
        )
        self._over = False
        self.closed = False

    def __aiter__(self) -> Inputs:
        return self

    async def __anext__(self) -> Any:
        if self._over or (self.closed and self._queue.empty()):
            self._over = True
            raise StopAsyncIteration
        try:
            async with asyncio.timeout(self._timeout_s):
                item = await self._queue.get()
        except TimeoutError:
            self._over = True  # no input for session_timeout: the stream of inputs ends
            raise StopAsyncIteration from None
        if isinstance(item, _Closed):
            self._over = True
            raise StopAsyncIteration
        if isinstance(item, InputError):
            self._over = True
            raise item
        try:
            return self._build(item)
        except BaseException:
            self._over = True  # as fal's inputs generator, finished by what it raised
            raise

    async def put(self, item: dict[str, Any] | InputError) -> None:
        """Queue one input (or the error a bad frame gives), waiting while the queue is full."""
        await self._queue.put(item)

    def close(self) -> None:
        """End the inputs after those already queued (the client has gone)."""
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_CLOSED)  # wakes a waiting handler; if full, it drains first


class StreamingSession:
    """Run one session of a streaming handler; end it exactly once."""

    def __init__(self, wire: SessionWire, app: RealtimeApp) -> None:
        self._wire = wire
        self._app = app
        self._mode = app.shape.mode
        self._inputs = Inputs(app.session_timeout, app.shape.build_input)
        self._accepting = True
        self._inputs_seen = 0

    async def run(self) -> None:
        """Read inputs in a task of their own while the handler runs here; then finish."""
        reader = asyncio.create_task(self._read_loop(), name="gateway-realtime-reader")
        try:
            ending = await self._serve()
        finally:
            await stop_task(reader)
        await self._wire.finish(ending)

    async def _read_loop(self) -> None:
        ws = self._wire.ws
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.PING, WSMsgType.PONG):
                continue  # only seen with autoping off (the ignore_pings fault)
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                self._inputs.close()  # CLOSE, CLOSING, CLOSED, ERROR: the client is gone
                return
            if not self._accepting:
                continue  # server streaming took its one input; the runner reads no more
            try:
                value = decode_input(msg.data)
            except InputError as exc:
                self._accepting = False
                await self._inputs.put(exc)
                continue
            self._inputs_seen += 1
            every = self._wire.faults.rate_limit_every
            if every and self._inputs_seen % every == 0:
                with contextlib.suppress(SessionOver, ConnectionError, RuntimeError):
                    await self._wire.rate_limited()
                continue
            if self._mode is RealtimeMode.SERVER_STREAMING:
                self._accepting = False
            await self._inputs.put(value)

    async def _serve(self) -> Ending:
        try:
            if self._mode is RealtimeMode.SERVER_STREAMING:
                await self._server_streaming()
            elif self._mode is RealtimeMode.CLIENT_STREAMING:
                await self._client_streaming()
            else:
                await self._bidi()
        except SessionOver:
            self._wire.end(Ending(None))
        except Exception as exc:
            self._wire.fail(exc, self._app.app_id)
        self._wire.end(TIMEOUT)  # unless an ending was decided above
        return self._wire.ending.result()

    async def _server_streaming(self) -> None:
        try:
            value = await anext(self._inputs)
        except StopAsyncIteration:
            return  # no input within session_timeout (or the client left): TIMEOUT
        handler: Any = self._app.handler
        shape = self._app.shape
        started = time.perf_counter()
        await self._wire.simulate_inference()
        if shape.is_async_generator:
            result: Any = handler(value)
        elif shape.is_coroutine:
            result = await handler(value)
        else:
            result = await asyncio.to_thread(handler, value)
        if hasattr(result, "__aiter__"):
            await self._relay(cast(AsyncIterator[Any], result))
        elif hasattr(result, "__iter__"):
            await self._relay(_in_thread(iter(result)))
        else:
            raise TypeError(
                "Expected an async iterator or iterator output for server-streaming realtime"
            )
        await self._wire.timings(time.perf_counter() - started)

    async def _client_streaming(self) -> None:
        handler: Any = self._app.handler
        result = await handler(self._inputs)
        if hasattr(result, "__aiter__"):
            raise TypeError("Expected a single output for client-streaming realtime")
        await self._wire.emit(result)

    async def _bidi(self) -> None:
        handler: Any = self._app.handler
        if self._app.shape.is_async_generator:
            result = handler(self._inputs)
        else:
            result = await handler(self._inputs)
        if not hasattr(result, "__aiter__"):
            raise TypeError("Expected an async iterator output for bidirectional realtime")
        await self._relay(cast(AsyncIterator[Any], result))

    async def _relay(self, outputs: AsyncIterator[Any]) -> None:
        """Send each output as it comes; close the iterator however this ends."""
        try:
            async for output in outputs:
                await self._wire.emit(output)
        finally:
            aclose = getattr(outputs, "aclose", None)
            if aclose is not None:
                await aclose()


async def _in_thread(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """Advance a sync iterator in a worker thread, one item at a time (off the event loop)."""
    try:
        while True:
            item = await asyncio.to_thread(next, iterator, _DONE)
            if item is _DONE:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):  # still running in its thread: let it be
                close()
