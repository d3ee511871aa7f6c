"""A fault-injecting TCP proxy: put it between a client and a server to break the wire.

    async with FaultProxy("127.0.0.1", gateway_port) as proxy:
        conn = await fal_realtime.connect(app, base_url=proxy.ws_url, ...)
        proxy.cut()                 # every connection dies, no close frame (like a lost link)
        proxy.stall(2.0)            # no bytes either way for 2 s (a dead peer: heartbeats fail)
        proxy.cut_mid_frame()       # the next server->client chunk is cut in half, then the link
        proxy.delay_s = 0.05        # every chunk waits 50 ms
        proxy.refuse_for(1.0)       # new connections are dropped on accept for 1 s

It forwards bytes, nothing more: WebSocket frames, TLS and HTTP pass through untouched.
It listens on 127.0.0.1 only and owns every task it starts (``stop()`` awaits them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from types import TracebackType

from .._cycles import release_transport

__all__ = ["FaultProxy"]

log = logging.getLogger("fal_realtime.server.proxy")

_READ_SIZE = 64 * 1024


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop a connection at once (no FIN, no flush)."""
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
    release_transport(transport)


class FaultProxy:
    """Forward TCP from a local port to ``target``, breaking it on demand."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.delay_s = 0.0
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        #: Chunks read and held by a stall, not forwarded yet (a signal for tests: the
        #: bytes are in flight, stuck in the link).
        self.held = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refuse_until = 0.0
        self._cut_mid_frame = False
        self._stall_handle: asyncio.TimerHandle | None = None

    @property
    def ws_url(self) -> str:
        """Return ``ws://host:port``: a ``base_url`` that goes through the proxy."""
        return f"ws://{self.host}:{self.port}"

    @property
    def active(self) -> int:
        """Return how many client connections are being forwarded now."""
        return len(self._links)

    async def start(self) -> int:
        """Listen on a free port (or the one set); return it."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening, cut every connection, and await every task."""
        if self._stall_handle is not None:
            self._stall_handle.cancel()
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        tasks = [t for link in self._links for t in link.tasks] + list(self._handlers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- faults ------------------------------------------------------------------------

    def cut(self) -> int:
        """Abort every forwarded connection (no close frame, no FIN); return how many."""
        links = list(self._links)
        for link in links:
            link.abort()
        self.cuts += len(links)
        return len(links)

    def stall(self, seconds: float | None = None) -> None:
        """Stop forwarding bytes either way, for ``seconds`` or until :meth:`resume`."""
        self._flowing.clear()
        if self._stall_handle is not None:
            self._stall_handle.cancel()
            self._stall_handle = None
        if seconds is not None:
            self._stall_handle = asyncio.get_running_loop().call_later(seconds, self.resume)

    def resume(self) -> None:
        """Forward bytes again after :meth:`stall`."""
        self._flowing.set()

    def cut_mid_frame(self) -> None:
        """Forward only half of the next server-to-client chunk, then cut that connection."""
        self._cut_mid_frame = True

    def refuse_for(self, seconds: float) -> None:
        """Drop new connections as soon as they are accepted, for ``seconds``."""
        self._refuse_until = asyncio.get_running_loop().time() + seconds

    # -- forwarding --------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._refuse_until:
            self.refused += 1
            _abort(writer)
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            loop.create_task(self._pump(reader, up_writer, link, downstream=False)),
            loop.create_task(self._pump(up_reader, writer, link, downstream=True)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            link.abort()
            self._links.discard(link)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        *,
        downstream: bool,
    ) -> None:
        try:
            while True:
                data = await source.read(_READ_SIZE)
                if not data:
                    break
                if not self._flowing.is_set():
                    self.held += 1
                    try:
                        await self._flowing.wait()
                    finally:
                        self.held -= 1
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if downstream and self._cut_mid_frame:
                    self._cut_mid_frame = False
                    sink.write(data[: max(1, len(data) // 2)])
                    with contextlib.suppress(ConnectionError):
                        await sink.drain()
                    self.cuts += 1
                    link.abort()
                    return
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side finished: finish the other (a clean FIN here, not an abort).
            with contextlib.suppress(Exception):
                if not sink.transport.is_closing():
                    sink.write_eof()
