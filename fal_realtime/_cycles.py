"""Break the reference cycles that would keep finished sockets and tasks alive.

aiohttp (3.14) keeps each finished WebSocket alive in reference cycles:

- a close that failed (the peer was already gone) stores its exception on the socket,
  and that exception's traceback holds the frame that holds the socket;
- with a heartbeat, the connection's protocol keeps the socket's data callback.

Python's cycle collector frees them, but only in a full pass, and in a process with
thousands of long-lived objects full passes come minutes apart. Until then every lost
socket keeps its transport, buffers, request and the session around it. With 100
connections and a fault a second, that made RSS climb 10% in 10 minutes (the soak in
``benchmarks/soak.py``); with the cycles broken, reference counting frees each socket
the moment its owner lets go.

Python 3.11's socket transport also keeps a bound method of itself; 3.12 clears it on
close, and :func:`release_transport` does the same on 3.11. And a cancelled task keeps
its ``CancelledError``, whose traceback holds the frames of the method it ran, whose
``self`` often holds the task: :func:`stop_task` lets go of that error.

The client, the gateway and the fault proxy call these once they are done with a
socket or task; ``tests/test_cycles.py`` checks that lost, refused and closed sockets
leave no cyclic garbage, so an aiohttp or Python that renames these attributes fails a
test instead of leaking quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["release_socket", "release_transport", "serving_socket", "stop_task"]

#: Python 3.12 breaks the transport's own cycle on close (CPython gh-100348).
_TRANSPORT_KEEPS_ITSELF = sys.version_info < (3, 12)


def release_socket(ws: Any) -> None:
    """Drop the back-references of a closed aiohttp WebSocket (client or server side).

    Call it once nothing will read the socket again: its stored exception is cleared.
    An open socket is left alone.

    Args:
        ws: an ``aiohttp.ClientWebSocketResponse`` or ``aiohttp.web.WebSocketResponse``.
    """
    if not ws.closed:
        return
    if getattr(ws, "_exception", None) is not None:
        ws._exception = None
    # The heartbeat callback: on the client it hangs off the response's protocol, on
    # the server off the request's. (A protocol is also a queue: compare with None.)
    for owner, name in (("_response", "_protocol"), ("_req", "protocol")):
        protocol = getattr(getattr(ws, owner, None), name, None)
        if protocol is not None and getattr(protocol, "_data_received_cb", None) is not None:
            protocol._data_received_cb = None
    release_transport(getattr(getattr(ws, "_writer", None), "transport", None))


def release_transport(transport: asyncio.BaseTransport | None) -> None:
    """Clear the reference a closing socket transport keeps to itself (Python 3.11).

    Args:
        transport: a transport that :meth:`~asyncio.BaseTransport.close` was called on;
            one still open, or from another event loop implementation, is left alone.
    """
    if (
        _TRANSPORT_KEEPS_ITSELF
        and transport is not None
        and transport.is_closing()
        and getattr(transport, "_read_ready_cb", None) is not None
    ):
        # Its reader is already off the selector: the callback is never called again.
        transport._read_ready_cb = None  # type: ignore[attr-defined]


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
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        # The first result() hands the stored CancelledError over; the task forgets it.
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
