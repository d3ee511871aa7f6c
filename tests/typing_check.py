"""Checked by mypy --strict (tests/test_typing.py), never run: how users' callbacks type-check.

Plain functions and ``async def`` callbacks fit ``connect()``'s callback protocols; a
callback with the wrong shape is refused (each such line carries a ``type: ignore``
that mypy --strict, which warns about unused ignores, proves necessary).
"""

from __future__ import annotations

from typing import Any

import fal_realtime
from fal_realtime import (
    Connecting,
    ConnectionState,
    Encoding,
    ErrorCode,
    OnClose,
    OnError,
    OnMeta,
    OnOpen,
    OnResult,
    OnStateChange,
    RealtimeConnection,
    RealtimeError,
    TokenProvider,
)


def on_result(result: dict[str, Any]) -> None:
    print(result)


async def on_result_async(result: Any) -> None:
    print(result)


def on_error(error: RealtimeError) -> None:
    if error.code == ErrorCode.RATE_LIMITED or error.code == "RATE_LIMITED":
        print(error.message)


async def on_error_async(error: RealtimeError) -> None:
    print(error)


def on_open() -> None:
    print("open")


async def on_close(code: int | None) -> None:
    print(code)


def on_state_change(state: ConnectionState) -> None:
    print(state.value)


async def on_meta(message: dict[str, Any]) -> None:
    print(message.get("action"))


def token_provider(app: str) -> str:
    return app


async def token_provider_async(app: str) -> str:
    return app


def on_two_arguments(result: Any, extra: Any) -> None:
    print(result, extra)


def on_error_wrong_type(error: int) -> None:
    print(error)


async def use_it() -> None:
    results: list[Any] = []
    errors: list[RealtimeError] = []
    encoding: Encoding = "json"
    provider: TokenProvider = token_provider_async
    conn: RealtimeConnection = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=on_result,
        on_error=on_error,
        on_open=on_open,
        on_close=on_close,
        on_state_change=on_state_change,
        on_meta=on_meta,
        token_provider=provider,
        encoding=encoding,
    )
    await conn.close()
    connecting: Connecting = fal_realtime.connect(
        "fal-ai/echo",
        on_result=on_result_async,
        on_error=on_error_async,
        on_open=lambda: None,
        on_state_change=print,
        token_provider=token_provider,
    )
    async with connecting as conn:
        await conn.send({"prompt": "hi"})
    # Bound methods of the usual containers fit as well.
    async with fal_realtime.connect(
        "fal-ai/echo", on_result=results.append, on_error=errors.append
    ) as conn:
        conn.send_nowait({"prompt": "hi"})
    # Protocol types name the shapes for users who store callbacks.
    handlers: tuple[OnResult, OnError, OnOpen, OnClose, OnStateChange, OnMeta] = (
        on_result,
        on_error,
        on_open,
        on_close,
        on_state_change,
        on_meta,
    )
    print(handlers)


async def refused() -> None:
    fal_realtime.connect("fal-ai/echo", on_result=on_two_arguments)  # type: ignore[arg-type]
    fal_realtime.connect("fal-ai/echo", on_error=on_error_wrong_type)  # type: ignore[arg-type]
    fal_realtime.connect("fal-ai/echo", on_open=on_result)  # type: ignore[arg-type]
    fal_realtime.connect("fal-ai/echo", encoding="xml")  # type: ignore[arg-type]
    conn = fal_realtime.connect("fal-ai/echo")
    await conn.send({})  # type: ignore[attr-defined]
