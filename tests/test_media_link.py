"""RT-MEDIA: latest wins end to end, over real sockets: at the link and at the server.

A link slower than the sender is a proxy that stops reading the client's bytes
(``tests/link_tools.py``); a model slower than the inputs is a handler that waits on a
gate. The assertions are on what was superseded, sent and delivered, never on time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

import fal_realtime
from fal_realtime.server import Gateway, RunningGateway

from .conftest import KEY
from .gateway_tools import FramesRead, eventually
from .link_tools import HeldLink

FRAME = 50_000  # a camera frame's size, as fal's demos send them
FRAMES = 40


@pytest.fixture
def media_gateway(gateway: Gateway) -> Gateway:
    """Add test/frames: answers each input with its index (not the frame's bytes)."""

    @gateway.realtime("test/frames")
    async def frames(input: dict[str, Any]) -> dict[str, Any]:
        return {"i": input["i"], "size": len(input.get("image_bytes", b""))}

    return gateway


@pytest.fixture
async def held(running: RunningGateway, media_gateway: Gateway) -> AsyncIterator[HeldLink]:
    """A proxy in front of the test gateway whose uplink can be held."""
    async with HeldLink(running.host, running.port) as link:
        yield link


def _frame(i: int) -> dict[str, Any]:
    return {"i": i, "image_bytes": os.urandom(FRAME)}


async def test_rt_media_1_a_held_link_supersedes_frames_and_bounds_the_backlog(
    held: HeldLink,
) -> None:
    """RT-MEDIA-1: frames waiting for a held link are superseded; a bounded few were handed."""
    results: list[dict[str, Any]] = []
    async with await fal_realtime.connect(
        "test/frames", base_url=held.ws_url, key=KEY, throttle_interval=0, on_result=results.append
    ) as conn:
        await conn.send({"i": -1})
        await eventually(lambda: len(results) == 1)
        held.hold()
        for i in range(FRAMES):
            await conn.send(_frame(i))
            await asyncio.sleep(0)  # a camera's pace: the loop turns between frames
        stats = conn.stats
        handed = stats.sent - 1
        # Every input is accounted for: handed to the socket, superseded, or the one waiting.
        assert handed + stats.coalesced + conn.pending == FRAMES
        assert conn.pending == 1
        # The socket took what its buffers hold (a frame or two), and then nothing more.
        assert 1 <= handed <= 3, handed
        assert stats.superseded_at_link == stats.coalesced >= FRAMES - 4
        held.release()
        # The newest frame goes out once the link drains, and is answered last.
        await eventually(lambda: results[-1]["i"] == FRAMES - 1)
        assert [r["i"] for r in results] == sorted(r["i"] for r in results)
        assert all(r["size"] == FRAME for r in results[1:])
        assert stats.sent == 1 + handed + 1


async def test_rt_media_2_coalesce_false_keeps_every_frame_with_back_pressure(
    held: HeldLink,
) -> None:
    """RT-MEDIA-2: coalesce=False: a held link makes send wait; every frame arrives, in order."""
    results: list[dict[str, Any]] = []
    async with await fal_realtime.connect(
        "test/frames",
        base_url=held.ws_url,
        key=KEY,
        throttle_interval=0,
        coalesce=False,
        on_result=results.append,
    ) as conn:
        held.hold()
        sending = asyncio.create_task(_send_all(conn, 12))
        await eventually(lambda: conn.stats.sent >= 3)  # some were handed; send now waits
        assert not sending.done()
        held.release()
        await sending
        await eventually(lambda: len(results) == 12)
        assert [r["i"] for r in results] == list(range(12))
        assert conn.stats.coalesced == conn.stats.superseded_at_link == 0


async def _send_all(conn: fal_realtime.RealtimeConnection, count: int) -> None:
    for i in range(count):
        await conn.send(_frame(i))


async def test_rt_media_3_the_server_is_asked_to_keep_the_newest_input(
    running: RunningGateway,
) -> None:
    """RT-MEDIA-3: coalescing asks max_buffering=1; a value set wins; coalesce=False asks none."""

    async def url(**kwargs: Any) -> str:
        conn = await fal_realtime.connect(
            "fal-ai/echo", base_url=running.ws_url, key=KEY, use_jwt=False, lazy=True, **kwargs
        )
        try:
            assert conn._options.url is not None
            return conn._options.url
        finally:
            await conn.close()

    assert (await url()).endswith("?max_buffering=1")
    assert (await url(max_buffering=7)).endswith("?max_buffering=7")
    assert "max_buffering" not in await url(coalesce=False)


async def test_rt_media_4_a_slow_model_answers_the_newest_input(
    gateway: Gateway, running: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RT-MEDIA-4: inputs that wait for a busy model are superseded there: first, then newest."""
    gate, busy = asyncio.Event(), asyncio.Event()

    @gateway.realtime("test/slow")
    async def slow(input: dict[str, Any]) -> dict[str, Any]:
        busy.set()
        await gate.wait()
        return {"i": input["i"]}

    frames_read = FramesRead(monkeypatch)
    results: list[dict[str, Any]] = []
    async with await fal_realtime.connect(
        "test/slow", base_url=running.ws_url, key=KEY, throttle_interval=0, on_result=results.append
    ) as conn:
        await conn.send({"i": 0})
        await busy.wait()  # the model is on input 0
        for i in range(1, 10):
            await conn.send({"i": i})
        await frames_read.until(10)  # the other nine reached the server while it was busy
        gate.set()
        await eventually(lambda: results and results[-1]["i"] == 9)
        assert [r["i"] for r in results] == [0, 9]
        assert conn.stats.sent == 10 and conn.stats.coalesced == 0


async def test_rt_media_5_a_fast_link_hands_every_frame_at_once(
    running: RunningGateway, media_gateway: Gateway
) -> None:
    """RT-MEDIA-5: on a link that keeps up, latest wins supersedes nothing: every frame is sent."""
    results: list[dict[str, Any]] = []
    async with await fal_realtime.connect(
        "test/frames",
        base_url=running.ws_url,
        key=KEY,
        throttle_interval=0,
        max_buffering=60,
        on_result=results.append,
    ) as conn:
        for i in range(10):
            await conn.send(_frame(i))
            await eventually(lambda: conn.pending == 0)  # drained before the next frame
        await eventually(lambda: len(results) == 10)
        assert [r["i"] for r in results] == list(range(10))
        assert conn.stats.sent == 10 and conn.stats.coalesced == 0


@pytest.mark.parametrize("transports", ["found", "unrecognised"])
async def test_rt_media_6_the_backlog_reads_the_transport_or_the_kernel_alone(
    held: HeldLink, monkeypatch: pytest.MonkeyPatch, transports: str
) -> None:
    """RT-MEDIA-6: the socket's transport is found; unrecognised, the kernel alone bounds it."""
    from fal_realtime import _backlog

    if transports == "unrecognised":
        monkeypatch.setattr(_backlog, "write_transports", lambda ws: ())
    results: list[dict[str, Any]] = []
    async with await fal_realtime.connect(
        "test/frames", base_url=held.ws_url, key=KEY, throttle_interval=0, on_result=results.append
    ) as conn:
        await conn.send({"i": -1})
        await eventually(lambda: len(results) == 1)
        link = conn._driver.link
        assert link is not None
        found = _backlog.write_transports(link.ws)
        assert len(found) == (1 if transports == "found" else 0)
        held.hold()
        for i in range(FRAMES):
            await conn.send(_frame(i))
            await asyncio.sleep(0)
        assert conn.stats.superseded_at_link >= FRAMES - 4
        held.release()
        await eventually(lambda: results[-1]["i"] == FRAMES - 1)
