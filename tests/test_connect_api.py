"""RT-API: connect() reads like its peers: await or async with, checked arguments, typed codes."""

from __future__ import annotations

import asyncio
import math
import pickle
from typing import Any

import pytest

import fal_realtime
from fal_realtime import (
    RATE_LIMITED,
    ConnectionState,
    ErrorCode,
    RealtimeError,
    ReconnectPolicy,
)
from fal_realtime.errors import error_for
from fal_realtime.server import RunningGateway

from .conftest import KEY
from .gateway_tools import WAIT

ECHO = "fal-ai/echo"


def _options(running: RunningGateway, **kwargs: Any) -> dict[str, Any]:
    return {"base_url": running.ws_url, "key": KEY, "throttle_interval": 0, **kwargs}


async def test_rt_api_1_async_with_connect_opens_and_closes(running: RunningGateway) -> None:
    """RT-API-1: `async with connect(...) as conn` gives an open connection, closed on exit."""
    results: asyncio.Queue[Any] = asyncio.Queue()
    async with asyncio.timeout(WAIT):
        async with fal_realtime.connect(
            ECHO, on_result=results.put_nowait, **_options(running)
        ) as conn:
            assert conn.state is ConnectionState.OPEN
            await conn.send({"n": 1})
            assert await results.get() == {"echo": {"n": 1}}
    assert conn.state is ConnectionState.CLOSED


async def test_rt_api_1_await_connect_still_returns_the_connection(
    running: RunningGateway,
) -> None:
    """RT-API-1: `await connect(...)` returns the open connection, and `async with` it closes it."""
    async with asyncio.timeout(WAIT):
        async with await fal_realtime.connect(ECHO, **_options(running)) as conn:
            assert isinstance(conn, fal_realtime.RealtimeConnection)
            assert conn.state is ConnectionState.OPEN
    assert conn.closed


async def test_rt_api_1_async_with_closes_when_the_body_raises(running: RunningGateway) -> None:
    """RT-API-1: an exception in the `async with` body still closes the connection."""
    opened: list[fal_realtime.RealtimeConnection] = []
    with pytest.raises(LookupError):
        async with fal_realtime.connect(ECHO, **_options(running)) as conn:
            opened.append(conn)
            raise LookupError("from the body")
    assert opened[0].state is ConnectionState.CLOSED


async def test_rt_api_1_a_forgotten_await_says_so(running: RunningGateway) -> None:
    """RT-API-1: using connect()'s result without await names the fix, nothing is opened."""
    connecting: Any = fal_realtime.connect(ECHO, **_options(running))
    with pytest.raises(AttributeError, match=r"await connect\(\.\.\.\)"):
        await connecting.send({"n": 1})
    assert "fal-ai/echo" in repr(connecting)


def test_rt_api_2_bad_arguments_raise_at_the_call_without_a_coroutine() -> None:
    """RT-API-2: a bad argument raises at the call, outside any loop: no I/O, no coroutine."""
    # With -W error a "coroutine was never awaited" would fail this test.
    with pytest.raises(ValueError, match="invalid app id"):
        fal_realtime.connect("not an app", key=KEY)
    with pytest.raises(ValueError, match="max_buffering"):
        fal_realtime.connect(ECHO, key=KEY, max_buffering=61)


FLOAT_OPTIONS = ["throttle_interval", "heartbeat_s", "open_timeout_s", "close_timeout_s"]
BAD_FLOATS = [math.nan, math.inf, -math.inf, -1.0]


@pytest.mark.parametrize("value", BAD_FLOATS, ids=["nan", "inf", "-inf", "negative"])
@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_rt_api_3_non_finite_or_negative_seconds_are_refused(option: str, value: float) -> None:
    """RT-API-3: nan, inf and negative seconds get a one-line ValueError naming the option."""
    with pytest.raises(ValueError) as info:
        fal_realtime.connect(ECHO, key=KEY, **{option: value})
    message = str(info.value)
    assert message.startswith(f"{option} must be a finite number of seconds")
    assert "\n" not in message


@pytest.mark.parametrize("value", BAD_FLOATS, ids=["nan", "inf", "-inf", "negative"])
@pytest.mark.parametrize("option", ["heartbeat_s", "open_timeout_s"])
def test_rt_api_3_ws_refuses_them_too(option: str, value: float) -> None:
    """RT-API-3: ws() refuses nan, inf and negative seconds the same way."""
    with pytest.raises(ValueError, match=f"^{option} must be a finite number of seconds"):
        fal_realtime.ws(ECHO, key=KEY, **{option: value})


@pytest.mark.parametrize("value", BAD_FLOATS, ids=["nan", "inf", "-inf", "negative"])
@pytest.mark.parametrize(
    "option", ["deadline_s", "initial_delay_s", "max_delay_s", "stable_after_s"]
)
def test_rt_api_3_reconnect_policy_refuses_them_too(option: str, value: float) -> None:
    """RT-API-3: ReconnectPolicy (connect's reconnect=) refuses nan, inf and negative seconds."""
    with pytest.raises(ValueError, match=f"^{option} must be a finite number of seconds"):
        ReconnectPolicy(**{option: value})
    with pytest.raises(ValueError, match=f"^{option} must be"):
        fal_realtime.connect(ECHO, key=KEY, reconnect={option: value})


def test_rt_api_3_zero_where_it_means_something_is_kept() -> None:
    """RT-API-3: throttle_interval=0 and close_timeout_s=0 stay valid; heartbeat_s=None too."""
    fal_realtime.connect(ECHO, key=KEY, throttle_interval=0, close_timeout_s=0, heartbeat_s=None)
    with pytest.raises(ValueError, match="^open_timeout_s must be a finite number of seconds > 0"):
        fal_realtime.connect(ECHO, key=KEY, open_timeout_s=0)


async def test_rt_api_4_connection_key_refuses_differing_options(running: RunningGateway) -> None:
    """RT-API-4: a live key with other options raises ValueError naming each of them."""
    async with fal_realtime.connect(ECHO, connection_key="k", **_options(running)) as conn:
        with pytest.raises(ValueError) as info:
            await fal_realtime.connect(
                ECHO,
                connection_key="k",
                **_options(running, throttle_interval=0.5, coalesce=False, key="other:key"),
            )
        message = str(info.value)
        assert "throttle_interval, coalesce, key" in message
        assert "other:key" not in message and KEY not in message  # names, never values
        assert conn.state is ConnectionState.OPEN
        assert "\n" not in message


async def test_rt_api_4_same_options_new_callbacks_reuse_the_connection(
    running: RunningGateway,
) -> None:
    """RT-API-4: the same options (and new callbacks) give back the live connection."""
    results: asyncio.Queue[Any] = asyncio.Queue()
    async with asyncio.timeout(WAIT):
        async with fal_realtime.connect(ECHO, connection_key="k", **_options(running)) as first:
            again = await fal_realtime.connect(
                ECHO, connection_key="k", on_result=results.put_nowait, **_options(running)
            )
            assert again is first
            await again.send({"n": 4})
            assert await results.get() == {"echo": {"n": 4}}


async def test_rt_api_4_a_reconnect_policy_equal_by_value_is_the_same(
    running: RunningGateway,
) -> None:
    """RT-API-4: options are compared by value: an equal ReconnectPolicy is no difference."""
    options = _options(running, connection_key="k")
    async with fal_realtime.connect(ECHO, reconnect=ReconnectPolicy(3), **options) as first:
        assert await fal_realtime.connect(ECHO, reconnect={"max_attempts": 3}, **options) is first


def test_rt_api_5_error_codes_are_a_str_enum() -> None:
    """RT-API-5: known codes become ErrorCode members equal to their strings; others pass."""
    known = RealtimeError("RATE_LIMITED", "slow down")
    assert known.code is ErrorCode.RATE_LIMITED is RATE_LIMITED
    assert known.code == "RATE_LIMITED" and str(known) == "RATE_LIMITED: slow down"
    assert repr(known) == "RealtimeError('RATE_LIMITED', 'slow down')"
    unknown = error_for("GPU_ON_FIRE", "a server's own code")
    assert unknown.code == "GPU_ON_FIRE" and type(unknown.code) is str
    assert str(unknown) == "GPU_ON_FIRE: a server's own code"
    assert [str(code) for code in ErrorCode] == [code.value for code in ErrorCode]
    for name in ErrorCode.__members__:
        assert getattr(fal_realtime, name) is ErrorCode[name]


def test_rt_api_5_errors_pickle_with_their_code() -> None:
    """RT-API-5: an error with an ErrorCode (or a server's string) survives pickling."""
    for error in (error_for("UNAUTHORIZED", "no"), RealtimeError("ODD", "x", status=418)):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.code, copy.message, copy.status) == (error.code, error.message, error.status)
        assert type(copy.code) is type(error.code)
