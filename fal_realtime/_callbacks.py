"""The shapes of ``connect()``'s callbacks, for type checkers.

Each is a protocol satisfied by a plain function or an ``async def`` taking the same
positional arguments (any names): what a callback returns is awaited when it is
awaitable, else ignored, so each is typed as returning ``object``::

    def on_result(result: dict[str, Any]) -> None: ...
    async def on_error(error: fal_realtime.RealtimeError) -> None: ...
"""

from __future__ import annotations

from typing import Any, Protocol

from ._protocol.session import ConnectionState
from .errors import RealtimeError

__all__ = ["OnClose", "OnError", "OnMeta", "OnOpen", "OnResult", "OnStateChange"]


class OnResult(Protocol):
    """Take one result: a dict (or what ``decode_message`` returns, when it is set)."""

    def __call__(self, result: Any, /) -> object:
        """Handle ``result``."""


class OnError(Protocol):
    """Take one :class:`~fal_realtime.RealtimeError` (a server error, a callback's, the failure)."""

    def __call__(self, error: RealtimeError, /) -> object:
        """Handle ``error``."""


class OnOpen(Protocol):
    """Take nothing: a socket opened (also after each reconnect)."""

    def __call__(self) -> object:
        """Handle the opening."""


class OnClose(Protocol):
    """Take a socket's close code (None when it had none: the socket was lost)."""

    def __call__(self, code: int | None, /) -> object:
        """Handle the close."""


class OnStateChange(Protocol):
    """Take the connection's new :class:`~fal_realtime.ConnectionState`."""

    def __call__(self, state: ConnectionState, /) -> object:
        """Handle the change."""


class OnMeta(Protocol):
    """Take an ``x-fal-message`` frame's map (e.g. ``{"type": ..., "action": "timings"}``)."""

    def __call__(self, message: dict[str, Any], /) -> object:
        """Handle ``message``."""
