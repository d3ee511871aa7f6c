"""The one aiohttp boundary: sessions, opening sockets, HTTP posts, and their errors.

Both clients (:func:`fal_realtime.connect`, :func:`fal_realtime.ws`) and the token
fetch reach aiohttp only through here, so aiohttp's and the OS's exceptions become a
:class:`~fal_realtime.RealtimeError` in one place, with one message per cause:

| cause | error |
|---|---|
| handshake 401/403 | ``UNAUTHORIZED`` (status kept) |
| handshake 429 | ``RATE_LIMITED``, retried |
| handshake 408/425/5xx | ``CONNECTION_LOST``, retried |
| handshake 404 | ``INVALID_INPUT``: check the app id and path |
| other handshake 4xx | ``INVALID_INPUT`` |
| TLS certificate not trusted | :class:`~fal_realtime.UntrustedCertificateError`, never retried |
| unreachable, reset, DNS | ``CONNECTION_LOST``, retried |
| a bounded wait ran out | ``CONNECTION_LOST`` when opening (retried), ``TIMEOUT`` for a post |

Whether an error is worth another attempt is
:func:`fal_realtime._protocol.session.retryable`, a pure function of the error.

Only aiohttp's public API is used here; its private state is reached in
:mod:`._aiohttp_private` alone (the inventory is its docstring).

Sessions: connections on one event loop share one ``aiohttp.ClientSession``, created
on first use and closed when the last connection holding it lets go; a session the
user passes (``session=``) is used as is and never closed here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from ._compat import ws_close_timeout
from ._protocol.apps import redact_url
from .errors import (
    CONNECTION_LOST,
    INVALID_INPUT,
    RATE_LIMITED,
    TIMEOUT,
    UNAUTHORIZED,
    RealtimeError,
    UntrustedCertificateError,
    error_for,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "RETRYABLE_STATUSES",
    "SessionLease",
    "close_quietly",
    "open_socket",
    "post",
    "send_failed",
    "shared_session",
    "socket_end",
    "status_error",
]

log = logging.getLogger("fal_realtime")

#: The largest frame sent or accepted unless configured (never unlimited, never 4 MiB).
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
#: HTTP statuses (handshake or token endpoint) that mean overload or server trouble.
RETRYABLE_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
#: What a failed ``send_bytes``/``send_str`` raises when the socket is going away.
send_failed: Final = (ConnectionError, RuntimeError, aiohttp.ClientError)


def status_error(status: int, *, what: str, where: str, detail: str = "") -> RealtimeError:
    """Return the error for an HTTP ``status`` refusing ``what`` (a handshake, a token request).

    Args:
        status: the HTTP status.
        what: what was refused, e.g. ``"handshake"``.
        where: the redacted URL or endpoint.
        detail: the answer's body text, already cleaned of secrets.
    """
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return error_for(
            UNAUTHORIZED,
            f"{where} refused the credentials ({what}, HTTP {status}): check FAL_KEY / key=",
            status=status,
            body=detail or None,
        )
    if status == 429:
        return error_for(RATE_LIMITED, f"{what} rate limited by {where} (HTTP 429)", status=status)
    if status in RETRYABLE_STATUSES:
        return error_for(
            CONNECTION_LOST, f"{what} with {where} failed: HTTP {status}", status=status
        )
    if status == 404 and what == "handshake":
        return error_for(
            INVALID_INPUT,
            f"nothing at {where} (HTTP 404): check the app id and path{suffix}",
            status=status,
        )
    return error_for(
        INVALID_INPUT, f"{what} refused by {where} (HTTP {status}){suffix}", status=status
    )


class _mapped:  # noqa: N801 (used as ``with _mapped(...):``, like a function)
    """Turn aiohttp's and the OS's exceptions into RealtimeError (causes dropped: URLs).

    Messages name the URL with its token redacted (computed only when something failed).
    A class rather than a ``@contextmanager``: it wraps every socket opened, and a
    generator per ``with`` is a measurable part of opening one.
    """

    __slots__ = ("_timeout_code", "_timeout_s", "_url", "_what")

    def __init__(self, url: str, *, what: str, timeout_code: str, timeout_s: float) -> None:
        self._url = url
        self._what = what
        self._timeout_code = timeout_code
        self._timeout_s = timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, Exception):
            return
        url, what = self._url, self._what
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            raise status_error(exc.status, what=what, where=redact_url(url)) from None
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            raise UntrustedCertificateError(
                CONNECTION_LOST,
                f"the TLS certificate of {redact_url(url)} was not trusted: pass ssl_context= "
                "with a context that trusts it (verification stays on)",
            ) from None
        if isinstance(exc, TimeoutError):
            where = redact_url(url)
            raise error_for(
                self._timeout_code, f"{what} with {where} took over {self._timeout_s:g} s"
            ) from None
        if isinstance(exc, aiohttp.ClientError | OSError):
            where = redact_url(url)
            raise error_for(
                CONNECTION_LOST, f"cannot reach {where}: {type(exc).__name__}"
            ) from None


async def open_socket(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    max_frame_bytes: int,
    open_timeout_s: float,
    close_timeout_s: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """Open a WebSocket to ``url``; raise :class:`RealtimeError` if it cannot be opened.

    Compression stays off (binary payloads gain nothing from it). Pings are the
    caller's: the socket is opened with ``autoping=False`` for :mod:`._keepalive`.
    """
    options = ws_close_timeout(close_timeout_s) if close_timeout_s is not None else {}
    with _mapped(url, what="handshake", timeout_code=CONNECTION_LOST, timeout_s=open_timeout_s):
        async with asyncio.timeout(open_timeout_s):
            ws: aiohttp.ClientWebSocketResponse = await session.ws_connect(
                url,
                headers=headers,
                autoping=False,  # the keep-alive and the reader handle pings
                max_msg_size=max_frame_bytes,
                compress=0,
                ssl=ssl_context if ssl_context is not None else True,
                **options,
            )
            return ws


async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    json: Any,
    headers: Mapping[str, str],
    timeout_s: float,
    what: str,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """POST ``json`` to ``url``; return the status and body, or raise RealtimeError."""
    with _mapped(url, what=what, timeout_code=TIMEOUT, timeout_s=timeout_s):
        async with asyncio.timeout(timeout_s):
            async with session.post(
                url,
                json=json,
                headers=dict(headers),
                ssl=ssl_context if ssl_context is not None else True,
            ) as resp:
                return resp.status, await resp.read()


def socket_end(
    msg: aiohttp.WSMessage, ws: aiohttp.ClientWebSocketResponse
) -> tuple[int | None, str]:
    """Return the close code and cause of a socket whose reader got ``msg`` (not data)."""
    cause = ""
    if msg.type is aiohttp.WSMsgType.ERROR:
        cause = f"{type(msg.data).__name__}: {msg.data}"
        if ws.close_code == 1009 or "1009" in str(msg.data):
            return 1009, cause  # aiohttp reports a frame over max_msg_size as an error
    code = ws.close_code
    return code, cause or f"close code {code}"


async def close_quietly(
    ws: aiohttp.ClientWebSocketResponse, log_fields: Mapping[str, str] | None = None
) -> None:
    """Close ``ws``; a peer that is gone already makes that fail, which changes nothing.

    ``log_fields`` are the ``extra`` fields of the line logged then (the connection's ids).
    """
    try:
        await ws.close()
    except Exception as exc:
        log.debug("fal_realtime: closing a socket failed: %r", exc, extra=log_fields)


# -- one ClientSession per event loop ---------------------------------------------------


@dataclass(slots=True)
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = weakref.WeakKeyDictionary()


#: No aiohttp timeouts on the shared session: whatever goes through it is bounded here
#: (:func:`open_socket` by ``open_timeout_s``, :func:`post` by ``timeout_s``). aiohttp's
#: default total (300 s) would add nothing but a timer per socket, kept while it is open.
_UNBOUNDED = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


def _new_session() -> aiohttp.ClientSession:
    # No connection limit (each open WebSocket holds one), no shared cookies between
    # connections, TLS verified per request with each connection's own context.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=_UNBOUNDED,
    )


class SessionLease:
    """One connection's hold on a ``ClientSession``: its loop's shared one, or the user's."""

    __slots__ = ("_held", "_user")

    def __init__(self, user_session: aiohttp.ClientSession | None = None) -> None:
        self._user = user_session
        self._held: _Shared | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Return the session, taking a hold on the loop's shared one on first use."""
        if self._user is not None:
            return self._user
        held = self._held
        if held is None:
            loop = asyncio.get_running_loop()
            held = _shared.get(loop)
            if held is None or held.session.closed:
                held = _shared[loop] = _Shared(_new_session())
            held.users += 1
            self._held = held
        return held.session

    async def release(self) -> None:
        """Let go of the shared session; the last holder closes it. Idempotent."""
        held, self._held = self._held, None
        if held is None:
            return
        held.users -= 1
        if held.users <= 0:
            loop = asyncio.get_running_loop()
            if _shared.get(loop) is held:
                del _shared[loop]
            await held.session.close()


def shared_session() -> aiohttp.ClientSession | None:
    """Return the running loop's shared session, if one is open (for tests and tools)."""
    held = _shared.get(asyncio.get_running_loop())
    return held.session if held is not None else None
