"""A slow uplink on loopback: a TCP proxy that limits the client-to-server direction.

    async with LinkLimiter("127.0.0.1", gateway_port, rate_bits_s=5e6) as link:
        conn = await fal_realtime.connect(app, base_url=link.ws_url, ...)
        ...
        link.forwarded_up      # bytes handed to the server so far

Every byte a client sends through the proxy waits for tokens of one bucket shared by
all its connections (one uplink, as a home connection is): the bucket refills at
``rate_bits_s / 8`` bytes per second up to ``burst_bytes``. The server-to-client
direction is forwarded as fast as it comes. The proxy forwards bytes, nothing more:
WebSocket frames and TLS pass through untouched.

Where the bytes wait matters, because that is what a client's latency is made of:
the proxy reads from a client only once it holds tokens for what it reads, so it
never queues more than one ``chunk_bytes`` piece itself. What the link has not
taken stays where a real slow uplink keeps it: in the client's socket (its write
buffer and its kernel send buffer). The proxy's own sockets get small kernel
buffers (``SO_RCVBUF`` on the listening socket, inherited by every accepted one;
``SO_SNDBUF`` on the socket to the server, ``buffer_bytes`` each; Linux doubles
what is asked and has a floor), so megabytes of loopback buffering in the proxy
cannot hide the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

__all__ = ["LinkLimiter", "TokenBucket"]

#: The proxy's kernel buffers, each way it is asked (Linux allocates twice this).
BUFFER_BYTES = 16 * 1024
#: The largest piece read from a client at once.
CHUNK_BYTES = 16 * 1024
#: The server-to-client direction's read size.
DOWN_CHUNK = 256 * 1024


class TokenBucket:
    """Hand out byte tokens at ``rate_bytes_s``, holding at most ``burst_bytes``.

    Args:
        rate_bytes_s: refill rate; ``None`` means unlimited.
        burst_bytes: the bucket's size (what may go at once after a quiet spell).
        quantum_bytes: a taker waits until it can have at least this many (or all it
            asked for), so a slow link is not served in a storm of tiny pieces.
    """

    def __init__(
        self, rate_bytes_s: float | None, *, burst_bytes: int, quantum_bytes: int = 4096
    ) -> None:
        if rate_bytes_s is not None and rate_bytes_s <= 0:
            raise ValueError(f"rate_bytes_s must be > 0 or None, got {rate_bytes_s}")
        if burst_bytes < 1 or quantum_bytes < 1:
            raise ValueError("burst_bytes and quantum_bytes must be >= 1")
        self.rate_bytes_s = rate_bytes_s
        self.burst_bytes = burst_bytes
        self.quantum_bytes = min(quantum_bytes, burst_bytes)
        self._tokens = float(burst_bytes)
        self._last: float | None = None

    def set_rate(self, rate_bytes_s: float | None) -> None:
        """Change the refill rate from now on (``None``: unlimited)."""
        self._refill()
        self.rate_bytes_s = rate_bytes_s

    def _refill(self) -> float:
        now = asyncio.get_running_loop().time()
        if self._last is not None and self.rate_bytes_s is not None:
            self._tokens = min(
                float(self.burst_bytes), self._tokens + (now - self._last) * self.rate_bytes_s
            )
        self._last = now
        return now

    async def take(self, wanted: int) -> int:
        """Wait for tokens, take up to ``wanted`` of them; return how many were taken."""
        while True:
            self._refill()
            if self.rate_bytes_s is None:
                return wanted
            need = min(wanted, self.quantum_bytes)
            if self._tokens >= need:
                taken = min(wanted, int(self._tokens))
                self._tokens -= taken
                return taken
            await asyncio.sleep((need - self._tokens) / self.rate_bytes_s)

    def give_back(self, tokens: int) -> None:
        """Return tokens taken but not used (what a read did not fill)."""
        if tokens > 0:
            self._tokens = min(float(self.burst_bytes), self._tokens + tokens)


class LinkLimiter:
    """Forward TCP from a port on 127.0.0.1 to ``target``, the uplink held to a rate.

    Args:
        target_host: where to forward to.
        target_port: its port.
        rate_bits_s: the uplink's rate in bits per second (``None``: unlimited).
        burst_bytes: the token bucket's size (default: 20 ms of the rate, at least 4 KiB).
        buffer_bytes: ``SO_RCVBUF``/``SO_SNDBUF`` asked for the proxy's sockets.
        chunk_bytes: the largest piece read from a client at once.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        rate_bits_s: float | None,
        burst_bytes: int | None = None,
        buffer_bytes: int = BUFFER_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        rate = None if rate_bits_s is None else rate_bits_s / 8
        if burst_bytes is None:
            burst_bytes = 4096 if rate is None else max(4096, int(rate * 0.020))
        self.bucket = TokenBucket(rate, burst_bytes=burst_bytes)
        self.target = (target_host, target_port)
        self.buffer_bytes = buffer_bytes
        self.chunk_bytes = chunk_bytes
        self.port = 0
        #: Bytes handed to the server (client to server), over all connections.
        self.forwarded_up = 0
        #: Bytes handed to clients (server to client).
        self.forwarded_down = 0
        #: Connections accepted so far.
        self.accepted = 0
        #: What the kernel granted for the proxy's buffers: (SO_RCVBUF in, SO_SNDBUF out).
        self.granted: tuple[int, int] = (0, 0)
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: set[socket.socket] = set()

    @property
    def rate_bits_s(self) -> float | None:
        """Return the uplink's rate in bits per second (``None``: unlimited)."""
        rate = self.bucket.rate_bytes_s
        return None if rate is None else rate * 8

    def set_rate(self, rate_bits_s: float | None) -> None:
        """Change the uplink's rate from now on (``None``: unlimited)."""
        self.bucket.set_rate(None if rate_bits_s is None else rate_bits_s / 8)

    @property
    def ws_url(self) -> str:
        """Return ``ws://127.0.0.1:PORT``: a ``base_url`` through the limited link."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def wss_url(self) -> str:
        """Return ``wss://127.0.0.1:PORT`` (when the target speaks TLS)."""
        return f"wss://127.0.0.1:{self.port}"

    async def start(self) -> int:
        """Listen on a free port; return it."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Set before listen(): accepted sockets inherit it, and the window they
        # advertise from their first segment follows it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_bytes)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop(listener))
        return self.port

    async def stop(self) -> None:
        """Stop listening, close every connection and await every task."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in list(self._sockets):
            sock.close()
        self._sockets.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def __aenter__(self) -> LinkLimiter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- forwarding --------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(listener)
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets.add(client)
            self.accepted += 1
            self._spawn(self._serve(client))

    async def _serve(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets.add(upstream)
        try:
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer_bytes)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setblocking(False)
            await loop.sock_connect(upstream, self.target)
            self.granted = (
                client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                upstream.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            )
            up = loop.create_task(self._pump_up(client, upstream))
            down = loop.create_task(self._pump_down(upstream, client))
            try:
                # Either side ending ends the link (a half-closed WebSocket is over).
                await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (up, down):
                    task.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                self._sockets.discard(sock)
                sock.close()

    async def _pump_up(self, source: socket.socket, sink: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while True:
                # Tokens first, then read no more than they cover: what the link has
                # not taken stays in the client's socket, not in this proxy. (Tokens
                # held while a quiet client is awaited add at most one chunk to the
                # burst after the quiet spell.)
                allowed = await self.bucket.take(self.chunk_bytes)
                data = await loop.sock_recv(source, allowed)
                self.bucket.give_back(allowed - len(data))
                if not data:
                    return
                await loop.sock_sendall(sink, data)
                self.forwarded_up += len(data)

    async def _pump_down(self, source: socket.socket, sink: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while True:
                data = await loop.sock_recv(source, DOWN_CHUNK)
                if not data:
                    return
                await loop.sock_sendall(sink, data)
                self.forwarded_down += len(data)
