"""The benchmarks' slow uplink (benchmarks/_linklimit.py), over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from benchmarks._linklimit import BUFFER_BYTES, LinkLimiter, TokenBucket

from .conftest import MS

WAIT = 5000 * MS
#: Bytes that tell their own position: reordering, loss or duplication would show.
PATTERN = b"".join(i.to_bytes(4, "big") for i in range(128 * 1024))  # 512 KiB


class FarEnd:
    """A TCP server that keeps what it receives, echoing it back when asked to."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self.received = bytearray()
        self.port = 0
        self._changed = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while data := await reader.read(65536):
                self.received += data
                self._changed.set()
                if self.echo:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def until_received(self, count: int) -> None:
        """Wait (bounded) until at least ``count`` bytes have arrived."""
        async with asyncio.timeout(WAIT):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FarEnd]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()


@contextlib.asynccontextmanager
async def _client(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_the_limiter_forwards_every_byte_in_order_both_ways() -> None:
    """Everything sent through the limiter arrives in order, and the echo comes back whole."""
    async with (
        FarEnd(echo=True).serving() as far,
        LinkLimiter("127.0.0.1", far.port, rate_bits_s=400e6) as link,
        _client(link.port) as (reader, writer),
    ):
        writer.write(PATTERN)
        async with asyncio.timeout(WAIT):
            echoed = await reader.readexactly(len(PATTERN))
        assert bytes(far.received) == PATTERN and echoed == PATTERN
        assert link.forwarded_up == link.forwarded_down == len(PATTERN)
        assert link.accepted == 1


async def test_the_limiter_holds_bytes_back_until_the_link_has_room() -> None:
    """At 64 kbit/s the far end has the first burst while most is held; a faster link frees it."""
    async with (
        FarEnd(echo=False).serving() as far,
        LinkLimiter("127.0.0.1", far.port, rate_bits_s=64e3, burst_bytes=4096) as link,
        _client(link.port) as (_reader, writer),
    ):
        writer.write(PATTERN)  # the rest waits in the client's socket, as on a slow uplink
        await far.until_received(4096)
        # 512 KiB at 8 KB/s is a minute's worth: only a burst and a trickle are through.
        assert len(far.received) < len(PATTERN) // 4
        assert link.forwarded_up < len(PATTERN) // 4
        link.set_rate(None)
        await far.until_received(len(PATTERN))
        assert bytes(far.received) == PATTERN and link.forwarded_up == len(PATTERN)


async def test_the_limiter_asks_for_small_kernel_buffers() -> None:
    """The proxy's sockets get the small buffers it asks for (Linux doubles them), not megabytes."""
    async with (
        FarEnd(echo=True).serving() as far,
        LinkLimiter("127.0.0.1", far.port, rate_bits_s=None) as link,
        _client(link.port) as (reader, writer),
    ):
        writer.write(b"ping")
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(4) == b"ping"
        rcvbuf, sndbuf = link.granted
        assert 0 < rcvbuf <= 4 * BUFFER_BYTES and 0 < sndbuf <= 4 * BUFFER_BYTES


async def test_the_token_bucket_hands_out_at_most_its_burst() -> None:
    """A bucket gives at most its burst at once, takes unused tokens back, refuses bad rates."""
    bucket = TokenBucket(1.0, burst_bytes=100, quantum_bytes=10)
    assert await bucket.take(1000) == 100
    bucket.give_back(500)
    assert await bucket.take(1000) == 100  # give_back never overfills
    assert await TokenBucket(None, burst_bytes=1).take(10**9) == 10**9
    with pytest.raises(ValueError, match="rate_bytes_s must be > 0"):
        TokenBucket(0, burst_bytes=1)
