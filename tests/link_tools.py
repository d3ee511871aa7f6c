"""A TCP proxy whose client-to-server direction can be held: a link slower than the sender.

While held it reads nothing from the client, and its socket's receive buffer is small
(``SO_RCVBUF``, set on the listening socket so the window is small from the start), so
the client's own socket backs up after a few tens of KiB: what a slow uplink looks like
to the sender. It counts the bytes it forwarded upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType

__all__ = ["HeldLink"]


class HeldLink:
    """Forward 127.0.0.1:port to ``target``; :meth:`hold` stops the upstream direction."""

    def __init__(self, target_host: str, target_port: int, *, rcvbuf: int = 16 * 1024) -> None:
        self.target = (target_host, target_port)
        self.rcvbuf = rcvbuf
        self.port = 0
        #: Bytes forwarded client -> server.
        self.upstream_bytes = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def ws_url(self) -> str:
        """Return ``ws://127.0.0.1:port``."""
        return f"ws://127.0.0.1:{self.port}"

    def hold(self) -> None:
        """Stop reading from the client (the server still talks to it)."""
        self._flowing.clear()

    def release(self) -> None:
        """Read from the client again."""
        self._flowing.set()

    async def __aenter__(self) -> HeldLink:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        listener.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._accept, sock=listener, limit=self.rcvbuf)
        self.port = listener.getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._flowing.set()
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pump(up_reader, writer, upstream=False)),
        ]
        try:
            await asyncio.gather(*pumps)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                if upstream:
                    await self._flowing.wait()
                data = await source.read(4096 if upstream else 65536)
                if not data:
                    return
                if upstream:
                    self.upstream_bytes += len(data)
                sink.write(data)
                await sink.drain()
