"""GW-FUZZ: the gateway fed arbitrary frames over raw sockets never crashes or leaks."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import ormsgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import register_demo_apps

from .conftest import KEY
from .gateway_tools import eventually

TIMEOUT_S = 2.0


@dataclass
class Served:
    """A gateway running on its own event loop for a whole hypothesis test."""

    runner: asyncio.Runner
    running: RunningGateway
    gateway: Gateway


@pytest.fixture
def served() -> Iterator[Served]:
    """Run a gateway (small frame limit) in a private loop for sync hypothesis tests."""
    with asyncio.Runner() as runner:
        gateway = Gateway(keys=[KEY], max_frame_bytes=64 * 1024, heartbeat_s=None)
        register_demo_apps(gateway)
        running = runner.run(gateway.start(port=0))
        try:
            yield Served(runner, running, gateway)
        finally:
            runner.run(running.stop())


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """Encode one masked client frame (RFC 6455), whatever the opcode."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", size)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frames(reader: asyncio.StreamReader) -> tuple[list[tuple[int, bytes]], bool]:
    """Read server frames until close or EOF; return them and whether a close frame came."""
    frames: list[tuple[int, bytes]] = []
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                head = await reader.readexactly(2)
                size = head[1] & 0x7F
                if size == 126:
                    size = struct.unpack(">H", await reader.readexactly(2))[0]
                elif size == 127:
                    size = struct.unpack(">Q", await reader.readexactly(8))[0]
                payload = await reader.readexactly(size)
                frames.append((head[0] & 0x0F, payload))
                if head[0] & 0x0F == 0x8:
                    return frames, True
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        # Silence is allowed too: e.g. a first fragment still waiting for its continuation.
        return frames, False


async def handshake(
    running: RunningGateway, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a raw socket and upgrade it to a WebSocket on ``path``."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Key {KEY}\r\n\r\n".encode()
    )
    async with asyncio.timeout(TIMEOUT_S):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def still_serving(running: RunningGateway) -> None:
    """Fail unless a well-formed realtime round trip works."""
    reader, writer = await handshake(running, "/fal-ai/echo/realtime")
    writer.write(frame(0x2, ormsgpack.packb({"alive": True})))
    async with asyncio.timeout(TIMEOUT_S):
        head = await reader.readexactly(2)
        payload = await reader.readexactly(head[1] & 0x7F)
    assert ormsgpack.unpackb(payload) == {"echo": {"alive": True}}
    writer.close()


OPCODES = st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x7, 0x8, 0x9, 0xA, 0xB, 0xF])
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.builds(
        ormsgpack.packb,
        st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**64 - 1), max_size=3),
    ),
    st.just(b"\xff\xfe\xfd"),  # invalid UTF-8
    st.integers(70_000, 70_010).map(lambda n: b"x" * n),  # over the 64 KiB frame limit
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(opcode=OPCODES, payload=PAYLOADS, fin=st.booleans(), realtime=st.booleans())
def test_gw_fuzz_1_arbitrary_frames_get_a_spec_answer(
    served: Served, opcode: int, payload: bytes, fin: bool, realtime: bool
) -> None:
    """GW-FUZZ-1: any one frame (bad opcode, bad UTF-8, fragments, oversize) is answered per
    SPEC: a result, INTERNAL_ERROR then 1000, 400 over HTTP-over-WS, or a protocol close;
    the gateway keeps serving and leaks no task."""

    async def case() -> None:
        baseline = len(asyncio.all_tasks())
        path = "/fal-ai/echo/realtime" if realtime else "/fal-ai/echo"
        reader, writer = await handshake(served.running, path)
        if opcode == 0x8 and len(payload) >= 2:
            payload_ = payload[:125]
        else:
            payload_ = payload
        writer.write(frame(opcode, payload_, fin=fin))
        writer.write(frame(0x8, struct.pack(">H", 1000)))  # then say goodbye
        frames, closed = await read_frames(reader)
        writer.close()
        texts = [p for op, p in frames if op == 0x1]
        closes = [p for op, p in frames if op == 0x8]
        codes = {struct.unpack(">H", p[:2])[0] for p in closes if len(p) >= 2}
        if realtime and closes and texts and b"x-fal-error" in texts[-1]:
            assert b"INTERNAL_ERROR" in texts[-1] and codes <= {1000}
        # Every close code the gateway sends is a defined one.
        assert codes <= {1000, 1002, 1003, 1007, 1009, 1011}, codes
        await still_serving(served.running)
        # The gateway lets go of the broken client's handler (bounded wait on its tasks).
        await eventually(lambda: len(asyncio.all_tasks()) <= baseline + 1)

    served.runner.run(case())


def test_gw_fuzz_2_many_broken_clients_at_once(served: Served) -> None:
    """GW-FUZZ-2: 50 clients sending garbage and vanishing mid-frame leave the gateway healthy."""

    async def case() -> None:
        baseline = len(asyncio.all_tasks())

        async def vandal(i: int) -> None:
            reader, writer = await handshake(served.running, "/fal-ai/echo/realtime")
            raw = frame(0x2, os.urandom(200 + i))
            writer.write(raw[: len(raw) // 2])  # half a frame, then gone
            await asyncio.sleep(0)
            writer.transport.abort()

        await asyncio.gather(*(vandal(i) for i in range(50)))
        await still_serving(served.running)
        await eventually(lambda: len(asyncio.all_tasks()) <= baseline + 1)

    served.runner.run(case())
