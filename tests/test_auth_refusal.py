"""RT-AUTH-13: a refusal sent with the handshake fails connect() every time, never now and then.

fal's edge accepts a realtime socket and sends ``{"status": "error", "error":
"Unauthorized"}`` right away. The gateway sends that frame in the same TCP segment as
its 101 response, and the client reads every frame that came with the handshake before
it counts the socket open; so ``connect()`` raises ``UNAUTHORIZED`` each time, with no
fixed wait. (A refusal that truly comes later goes to ``on_error`` and the next ``send``.)
"""

from __future__ import annotations

import collections
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import fal_realtime
from fal_realtime import UnauthorizedError
from fal_realtime._protocol.runner import UNAUTHORIZED_FRAME
from fal_realtime.server.realtime_session import _corked

from .child_tools import serve
from .conftest import KEY

ECHO = "fal-ai/echo"
#: How many refusals each test asks for: the race this guards against lost 1 in 12 to 30.
TRIES = 200


async def _outcomes(base_url: str, tries: int, **options: object) -> dict[str, int]:
    """Connect ``tries`` times; count what each connect() did (raised, or returned a state)."""
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(tries):
        try:
            conn = await fal_realtime.connect(ECHO, base_url=base_url, key=KEY, **options)  # type: ignore[arg-type]
        except UnauthorizedError:
            seen["UNAUTHORIZED"] += 1
        else:
            seen[f"returned a connection ({conn.state.value})"] += 1
            await conn.close()
    return dict(seen)


@pytest.mark.parametrize("use_jwt", [False, True], ids=["key_header", "jwt"])
async def test_rt_auth_13_refusal_with_the_handshake_always_raises(use_jwt: bool) -> None:
    """RT-AUTH-13: 200 refusals from a gateway in another process: connect() raises each time."""
    served = await serve("--demo", "--key", KEY, "--fault", f"{ECHO}=refuse_auth=1")
    try:
        outcomes = await _outcomes(f"ws://127.0.0.1:{served.port}", TRIES, use_jwt=use_jwt)
    finally:
        code, _out, err = await served.stop()
    assert outcomes == {"UNAUTHORIZED": TRIES}
    assert code == 0, err


@pytest.fixture
async def ping_then_refuse() -> AsyncIterator[str]:
    """Serve a realtime endpoint whose 101 comes with a ping and then the refusal (one segment)."""

    async def refuse(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        with _corked(request.transport):
            await ws.prepare(request)
            await ws.ping(b"are you there")
            await ws.send_str(UNAUTHORIZED_FRAME)
        await ws.close(code=1008, message=b"Unauthorized")
        return ws

    app = web.Application()
    app.router.add_get(f"/{ECHO}/realtime", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        yield f"ws://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK (Linux) sends it as one")
async def test_rt_auth_13_a_ping_before_the_refusal_does_not_open_the_socket(
    ping_then_refuse: str,
) -> None:
    """RT-AUTH-13: a ping that came with the handshake ahead of the refusal: still a raise."""
    outcomes = await _outcomes(ping_then_refuse, 20, use_jwt=False)
    assert outcomes == {"UNAUTHORIZED": 20}
