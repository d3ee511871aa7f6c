"""Break the reference cycles that would keep finished sockets and tasks alive.

A socket caught in a reference cycle is freed only by a full pass of Python's cycle
collector, and in a process with thousands of long-lived objects full passes come
minutes apart. Until then every lost socket keeps its transport, buffers, request and
the session around it: with 100 connections and a fault a second that made RSS climb
10% in 10 minutes (the soak, ``benchmarks/soak.py``). With the cycles broken, reference
counting frees each socket the moment its owner lets go. Where they come from:

- aiohttp: a close that failed (the peer was already gone) stores its exception on the
  socket, and the exception's traceback holds the frame that holds the socket. Cleared
  through public API: ``ws.exception().__traceback__``.
- aiohttp's ``heartbeat=``: its callbacks and ping task hold the socket, differently in
  each release (3.11–3.13: a pong-timeout handle; on Python 3.12+ an eagerly started ping
  task). The clients do not use it: they run their own keep-alive (``_keepalive.py``).
  The gateway's server sockets still do; for them the protocol's data callback is
  dropped (a private attribute, reached through :mod:`._aiohttp_private`).
- CPython's socket transport keeps bound methods of itself: on 3.11 always; on 3.12 and
  3.13 after ``abort()``, which is how a lost connection ends (``close()`` clears them).
  :func:`release_transport` clears them (CPython's private attributes, listed in the
  inventory of :mod:`._aiohttp_private`).
- A cancelled task keeps its ``CancelledError``, whose traceback holds the frames of the
  method it ran, whose ``self`` often holds the task: :func:`stop_task` lets go of it.

The client, the gateway and the fault proxy call these once they are done with a
socket or task; ``tests/test_cycles.py`` checks on every supported Python that lost,
refused and closed sockets leave no cyclic garbage, so an aiohttp or Python that renames
these attributes fails a test instead of leaking quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ._aiohttp_private import drop_heartbeat_callback, socket_transport

__all__ = ["release_socket", "release_transport", "serving_socket", "stop_task"]

#: The bound methods of itself a CPython selector socket transport keeps (3.11: the
#: first; 3.12+: both, cleared by ``close()`` but not by ``abort()``).
_SELF_REFERENCES = ("_read_ready_cb", "_write_ready")


def release_socket(ws: Any) -> None:
    """Drop the back-references of a closed aiohttp WebSocket (client or server side).

    Call it once nothing will read the socket again: its stored exception is cleared.
    An open socket is left alone.

    Args:
        ws: an ``aiohttp.ClientWebSocketResponse`` or ``aiohttp.web.WebSocketResponse``.
    """
    if not ws.closed:
        return
    error = ws.exception()
    while error is not None:  # the stored error and the ones it was raised from
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
    # The server-side heartbeat's callback hangs off the request's protocol (the
    # clients use no aiohttp heartbeat).
    drop_heartbeat_callback(ws)
    release_transport(socket_transport(ws))


def release_transport(transport: asyncio.BaseTransport | None) -> None:
    """Clear the references a finished socket transport keeps to itself.

    CPython's selector socket transport holds bound methods of itself
    (``_read_ready_cb``; from 3.12 also ``_write_ready``). Python 3.11 never clears
    them; 3.12 and 3.13 clear them in ``close()`` but not in ``abort()``, which is how a
    lost connection ends. Either way the transport, its protocol and its buffers wait for
    a full GC pass. Once the transport is closing with nothing left to write, its socket
    is off the selector and neither method is called again.

    Args:
        transport: a transport that was closed or aborted; one still open or still
            flushing, or from another event loop implementation (uvloop), is left alone.
    """
    if transport is None or not transport.is_closing():
        return
    first, second = _SELF_REFERENCES
    # (Only socket transports hold these; a closed TLS transport cannot even be asked
    # for its buffer size.)
    if getattr(transport, first, None) is None and getattr(transport, second, None) is None:
        return
    if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        return
    for name in _SELF_REFERENCES:
        if getattr(transport, name, None) is not None:
            setattr(transport, name, None)


@contextlib.asynccontextmanager
async def serving_socket(ws: Any) -> AsyncIterator[None]:
    """Close a server-side WebSocket when its handler is done, then release it.

    aiohttp would close it anyway right after the handler returns (``write_eof``), and a
    close that fails there stores an exception nobody releases; closing here first lets
    :func:`release_socket` see the socket closed.
    """
    try:
        yield
        if ws.prepared and not ws.closed:
            await ws.close()
    finally:
        release_socket(ws)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task``, wait for it to end, and drop the error a cancelled task keeps.

    Args:
        task: a task whose result nobody needs any more.
    """
    if not task.done():  # (a finished task needs no trip through the loop)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        # The first result() hands the stored CancelledError over; the task forgets it.
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
    else:
        task.exception()  # retrieved (gather does that for a task it waited for)
