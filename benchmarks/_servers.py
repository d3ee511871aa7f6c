"""The servers the suite measures against, each in a child process on 127.0.0.1.

    python -m benchmarks._servers upstream
    python -m benchmarks._servers gateway --upstream http://127.0.0.1:PORT [--tls-pem FILE]

A child prints one JSON line with its ports, serves until its standard input
closes (so it cannot outlive the suite), then stops cleanly. Putting servers in
their own processes keeps their CPU out of the client's event loop (the client's
cost is what the ratios compare) and their memory out of the client's RSS.

*upstream* is a minimal raw aiohttp server: ``POST /stream`` answers
``{"bytes": N, "chunk": C}`` with N bytes written C at a time; a WebSocket on
``/bench/clock/realtime`` answers every frame at once with ``{"t": arrival time}`` (its
``loop.time()``: the throttle scenario's stopwatch), and one on any other path (e.g.
``/bench/echo/realtime``) sends every frame back as it came (the raw echo server).

*gateway* is the project's :class:`~fal_realtime.server.Gateway` (``auth=False``)
with the demo apps, ``bench/up`` (HTTP over WebSockets to the upstream),
``bench/clock`` (realtime: answers ``{"t": arrival time}`` in the gateway's
``loop.time()``), ``bench/stamp``, ``bench/slow`` and ``bench/media`` (the media
scenarios' apps: each answers an input's capture time, the slow one after
``SLOW_MODEL_S``, the media one with the frame back as an image), and two control
routes: ``POST /_bench/faults`` (``{"app", "spec"}``
-> :meth:`Gateway.set_faults`) and ``GET /_bench/rss`` (the child's RSS in bytes).
It runs with no per-key connection cap and asks for an open-files limit of
``GATEWAY_FDS`` (capped by the hard limit): the scale scenario holds 10,000 sockets.

To see where a server spends its time, set ``FAL_RT_BENCH_PROFILE_DIR=DIR``: every
child then runs under pyinstrument and writes its profile to ``DIR/ROLE-PID.txt``
when it stops (e.g. ``FAL_RT_BENCH_PROFILE_DIR=/tmp/prof python -m benchmarks --only
overhead``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import ormsgpack
from aiohttp import WSMsgType, web

__all__ = [
    "GATEWAY_FDS",
    "ServerInfo",
    "cpu_seconds",
    "open_fds",
    "raise_fd_limit",
    "rss_bytes",
    "serve_child",
]

#: Set to a directory to run every child server under pyinstrument (``ROLE-PID.txt`` there).
PROFILE_ENV = "FAL_RT_BENCH_PROFILE_DIR"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: The open-files limit the gateway child asks for (capped by the hard limit).
GATEWAY_FDS = 65536
#: How long ``bench/slow`` (the slowmodel scenario's model) takes per input.
SLOW_MODEL_S = 0.080
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Return this process's resident set size (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time used so far by process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit(wanted: int = 8192) -> int:
    """Raise the soft open-files limit toward ``wanted``; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_fds(pid: int) -> int:
    """Return how many file descriptors process ``pid`` has open (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Where a child server listens."""

    port: int
    tls_port: int | None
    pid: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def wss(self) -> str:
        assert self.tls_port is not None
        return f"wss://127.0.0.1:{self.tls_port}"

    @property
    def https(self) -> str:
        assert self.tls_port is not None
        return f"https://127.0.0.1:{self.tls_port}"


@contextlib.asynccontextmanager
async def serve_child(role: str, *args: str) -> AsyncIterator[ServerInfo]:
    """Start ``python -m benchmarks._servers ROLE ARGS`` and yield where it listens."""
    profile: list[str] = []
    if where := os.environ.get(PROFILE_ENV):
        os.makedirs(where, exist_ok=True)
        output = os.path.join(where, f"{role}-{os.getpid()}.txt")
        profile = ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", output]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *profile,
        "-m",
        "benchmarks._servers",
        role,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {role} server exited before listening")
        info = orjson.loads(line)
        yield ServerInfo(info["port"], info.get("tls_port"), proc.pid)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the child stops when its stdin closes
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- the child side ------------------------------------------------------------------------

_BLOCK = b"\xab" * (1024 * 1024)


async def _stream(request: web.Request) -> web.StreamResponse:
    spec = await request.json()
    total, chunk = int(spec["bytes"]), int(spec.get("chunk", 65536))
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = total
    await resp.prepare(request)
    block = _BLOCK[:chunk] if chunk <= len(_BLOCK) else b"\xab" * chunk
    sent = 0
    while sent < total:
        piece = block if total - sent >= chunk else block[: total - sent]
        await resp.write(piece)
        sent += len(piece)
    await resp.write_eof()
    return resp


async def _echo(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, compress=False)
    await ws.prepare(request)
    if request.path.startswith("/bench/clock/"):
        return await _clock(ws)
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def _clock(ws: web.WebSocketResponse) -> web.WebSocketResponse:
    """Answer every frame at once with ``{"t": arrival time}`` (this loop's ``time()``)."""
    loop = asyncio.get_running_loop()
    async for _msg in ws:
        await ws.send_bytes(ormsgpack.packb({"t": loop.time()}))
    return ws


async def _serve_upstream() -> dict[str, Any]:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/stream", _stream)
    app.router.add_get("/{tail:.*}", _echo)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    _RUNNERS.append(runner)
    return {"port": port}


async def _serve_gateway(upstream: str, tls_pem: str | None) -> dict[str, Any]:
    from fal_realtime.server import Gateway
    from fal_realtime.server.demo import register_demo_apps

    # Capacity ramps past the default per-key cap (1000): measure the gateway, not the cap.
    gateway = Gateway(auth=False, max_connections_per_key=None)
    register_demo_apps(gateway)
    gateway.http_app("bench/up", upstream=upstream)
    loop = asyncio.get_running_loop()

    @gateway.realtime("bench/clock")
    async def clock(_input: Any) -> dict[str, Any]:
        return {"t": loop.time()}

    # The media scenarios' apps (benchmarks/_camera.py): each answers an input with its
    # capture time "t"; bench/slow is a model taking 80 ms per input, bench/media
    # sends the frame back as an image.
    @gateway.realtime("bench/stamp")
    async def stamp(value: dict[str, Any]) -> dict[str, Any]:
        return {"t": value.get("t"), "seq": value.get("seq")}

    @gateway.realtime("bench/slow")
    async def slow(value: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(SLOW_MODEL_S)
        return {"t": value.get("t"), "seq": value.get("seq")}

    @gateway.realtime("bench/media")
    async def media(value: dict[str, Any]) -> dict[str, Any]:
        image = {"content": value.get("image_bytes"), "content_type": "image/jpeg"}
        return {"images": [image], "t": value.get("t"), "seq": value.get("seq")}

    async def faults(request: web.Request) -> web.Response:
        body = await request.json()
        gateway.set_faults(body["app"], body.get("spec"))
        return web.json_response({"ok": True})

    async def rss(_request: web.Request) -> web.Response:
        return web.json_response({"rss": rss_bytes()})

    gateway.add_routes([web.post("/_bench/faults", faults), web.get("/_bench/rss", rss)])
    plain = await gateway.start("127.0.0.1", 0)
    _STOPS.append(plain.stop)
    info: dict[str, Any] = {"port": plain.port}
    if tls_pem:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_pem)
        secure = await gateway.start("127.0.0.1", 0, ssl_context=context)
        _STOPS.append(secure.stop)
        info["tls_port"] = secure.port
    return info


_RUNNERS: list[web.AppRunner] = []
_STOPS: list[Any] = []


async def _child(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    if args.role == "upstream":
        info = await _serve_upstream()
    else:
        info = await _serve_gateway(args.upstream, args.tls_pem)
    stdin_closed = asyncio.Event()

    class _Watch(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            stdin_closed.set()

    transport, _ = await loop.connect_read_pipe(_Watch, sys.stdin)
    print(orjson.dumps(info).decode(), flush=True)
    try:
        await stdin_closed.wait()
    finally:
        transport.close()
        for stop in _STOPS:
            await stop()
        for runner in _RUNNERS:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="a benchmark server (child process)")
    parser.add_argument("role", choices=["upstream", "gateway"])
    parser.add_argument("--upstream", default="http://127.0.0.1:9")
    parser.add_argument("--tls-pem", default=None)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    # The scale scenario holds 10,000 sockets open on the gateway at once.
    raise_fd_limit(GATEWAY_FDS if args.role == "gateway" else 8192)
    if args.uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_child(args))
    else:
        asyncio.run(_child(args))


if __name__ == "__main__":
    main()
