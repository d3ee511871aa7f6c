"""Fault injection for the gateway: what to break (parsed from a compact spec), and how.

A spec is ``;``-separated ``name=value`` items, e.g. ``drop_after=3;drop_mode=abort``.
It can be set per app in code (``gateway.set_faults(app, spec)``), per app on the
command line (``--fault APP=SPEC``) or per connection with the ``fal_faults``
query parameter.

| item | meaning |
|---|---|
| ``drop_after=N`` | after N frames sent to the client, end the socket |
| ``drop_mode=abort`` / ``close`` | abort the TCP connection (no close frame) or close cleanly |
| ``close_code=C`` | close code to use with ``drop_mode=close`` (default 1011) |
| ``delay_ms=D`` | delay each result by D milliseconds |
| ``inference_ms=D`` | a slow model: D ms per input before a unary handler (or a stream) runs |
| ``rate_limit_every=N`` | answer every Nth input with RATE_LIMITED (429 over HTTP) |
| ``refuse_auth=1`` | refuse the connection's credentials |
| ``reject_status=S`` | reject the WebSocket handshake with HTTP status S |
| ``connections=N`` | affect only the next N connections to the app, then stop (per-app faults) |
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields, replace
from typing import Literal

from aiohttp import web

__all__ = ["Faults", "FrameSender", "drop", "parse_faults"]


@dataclass(frozen=True, slots=True)
class Faults:
    """What the gateway breaks on a connection; the defaults break nothing."""

    drop_after: int | None = None
    drop_mode: Literal["abort", "close"] = "abort"
    close_code: int = 1011
    delay_ms: float = 0.0
    inference_ms: float = 0.0
    rate_limit_every: int | None = None
    refuse_auth: bool = False
    reject_status: int | None = None
    ignore_pings: bool = False
    connections: int | None = None

    @property
    def active(self) -> bool:
        """Tell whether any fault is set."""
        return self != Faults(connections=self.connections)

    def merged(self, other: Faults) -> Faults:
        """Return these faults with every non-default item of ``other`` laid over them."""
        changes = {
            f.name: getattr(other, f.name)
            for f in fields(other)
            if getattr(other, f.name) != f.default
        }
        return replace(self, **changes)


_INT_FIELDS = {"drop_after", "close_code", "rate_limit_every", "reject_status", "connections"}


def parse_faults(spec: str) -> Faults:
    """Parse ``name=value;...``; raise ``ValueError`` naming the bad item."""
    values: dict[str, object] = {}
    names = {f.name for f in fields(Faults)}
    for raw in spec.replace(",", ";").split(";"):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        value = value.strip()
        if name not in names or not sep:
            raise ValueError(
                f"unknown fault item {item!r}: expected name=value with name in "
                f"{', '.join(sorted(names))}"
            )
        try:
            if name in _INT_FIELDS:
                number = int(value)
                if number < 0:
                    raise ValueError(value)
                values[name] = number
            elif name in ("delay_ms", "inference_ms"):
                delay = float(value)
                if not delay >= 0:
                    raise ValueError(value)
                values[name] = delay
            elif name in ("refuse_auth", "ignore_pings"):
                values[name] = value.lower() in ("1", "true", "yes", "on")
            elif name == "drop_mode":
                if value not in ("abort", "close"):
                    raise ValueError(value)
                values[name] = value
        except ValueError:
            raise ValueError(f"bad value in fault item {item!r}") from None
    return Faults(**values)  # type: ignore[arg-type]


async def drop(request: web.Request, ws: web.WebSocketResponse, faults: Faults) -> None:
    """Break a connection as ``faults`` say: abort TCP (no close frame) or close cleanly."""
    if faults.drop_mode == "close":
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=faults.close_code, message=b"fault injection")
        return
    if request.transport is not None:
        request.transport.abort()


class FrameSender:
    """Send one socket's frames, dropping the socket once ``drop_after`` frames went out."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, faults: Faults) -> None:
        self._request = request
        self._ws = ws
        self._faults = faults
        self._sent = 0

    async def send(self, frame: bytes | str) -> bool:
        """Send ``frame``; return False when the socket is gone (closed, or just dropped)."""
        if self._ws.closed:
            return False
        if isinstance(frame, bytes):
            await self._ws.send_bytes(frame)
        else:
            await self._ws.send_str(frame)
        self._sent += 1
        limit = self._faults.drop_after
        if limit is not None and self._sent >= limit:
            await drop(self._request, self._ws, self._faults)
            return False
        return True
