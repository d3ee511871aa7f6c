"""WS-EX / WS-CLI: the HTTP-over-WebSocket examples and `fal-realtime ws`, run as a user would.

Each test starts a gateway in its own event loop and runs the example or the command in a
child process pointed at it (FAL_WS_RUN_HOST / FAL_KEY, or --base-url / --key).
"""

from __future__ import annotations

import ast
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import register_demo_apps

from .child_tools import CHILD_WAIT, finish, one_error_line, run, start
from .conftest import KEY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RESPONSE_KEYS = {"output", "partial", "error"}


@asynccontextmanager
async def _serving(gateway: Gateway | None = None) -> AsyncIterator[RunningGateway]:
    """Serve ``gateway`` (default: one accepting KEY with the demo apps) on a free port."""
    if gateway is None:
        gateway = Gateway(keys=[KEY])
        register_demo_apps(gateway)
    async with gateway.serve(port=0) as running:
        yield running


async def _example(name: str, running: RunningGateway) -> tuple[int, str, str]:
    """Run ``examples/NAME`` pointed at ``running`` by the environment, as its docstring says."""
    env = {"FAL_WS_RUN_HOST": running.ws_url, "FAL_KEY": KEY}
    return await run(sys.executable, str(EXAMPLES / name), env=env)


def _ws_args(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "fal_realtime", "ws", *args)


async def _ws(running: RunningGateway, *args: str) -> tuple[int, str, str]:
    """Run ``fal-realtime ws ARGS --base-url <gateway> --key KEY``."""
    return await run(*_ws_args(*args, "--base-url", running.ws_url, "--key", KEY))


def _assert_growing(events: list[dict[str, Any]], words: int) -> None:
    """Check streamed any-llm events: outputs grow, only the last is final, N words at the end."""
    assert len(events) >= 2
    for event in events:
        assert set(event) == RESPONSE_KEYS
        assert event["error"] is None
    outputs = [event["output"] for event in events]
    for shorter, longer in zip(outputs, outputs[1:], strict=False):
        assert longer.startswith(shorter)
        assert len(longer) >= len(shorter)
    assert len(outputs[0]) < len(outputs[-1])
    assert [event["partial"] for event in events] == [True] * (len(events) - 1) + [False]
    assert len(outputs[-1].split()) == words


# -- the examples ---------------------------------------------------------------------


async def test_ws_ex_1_any_llm_prints_three_responses() -> None:
    """WS-EX-1: examples/any_llm.py exits 0 and prints 3 response dicts of 1, 2 and 3 words."""
    async with _serving() as running:
        code, out, err = await _example("any_llm.py", running)
    assert code == 0, err
    assert err == ""
    responses = [ast.literal_eval(line) for line in out.splitlines()]
    assert len(responses) == 3
    for words, response in enumerate(responses, start=1):
        assert isinstance(response, dict)
        assert set(response) == RESPONSE_KEYS
        assert response["partial"] is False
        assert response["error"] is None
        assert len(response["output"].split()) == words


async def test_ws_ex_2_any_llm_stream_prints_growing_events_and_separators() -> None:
    """WS-EX-2: examples/any_llm_stream.py exits 0: two streams of growing outputs, each + ----."""
    async with _serving() as running:
        code, out, err = await _example("any_llm_stream.py", running)
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines.count("----") == 2
    assert lines[-1] == "----"
    first_end = lines.index("----")
    groups = [lines[:first_end], lines[first_end + 1 : -1]]
    for words, group in zip((5, 6), groups, strict=True):
        _assert_growing([ast.literal_eval(line) for line in group], words)


async def test_ws_ex_3_examples_without_a_gateway_exit_1_with_one_line() -> None:
    """WS-EX-3: with no key configured the examples exit 1 with one UNAUTHORIZED error line."""
    env = {"FAL_KEY": "", "FAL_KEY_ID": "", "FAL_KEY_SECRET": "", "FAL_WS_RUN_HOST": "ws://x:1"}
    for name in ("any_llm.py", "any_llm_stream.py"):
        code, out, err = await run(sys.executable, str(EXAMPLES / name), env=env)
        assert code == 1
        assert out == ""
        assert err.startswith("error: UNAUTHORIZED: ") and err.count("\n") == 1, err


# -- fal-realtime ws ------------------------------------------------------------------


async def test_ws_cli_1_prints_the_json_body() -> None:
    """WS-CLI-1: `ws fal-ai/any-llm '{"prompt": "Respond in 3 words."}'` prints 3 words as JSON."""
    async with _serving() as running:
        code, out, err = await _ws(running, "fal-ai/any-llm", '{"prompt": "Respond in 3 words."}')
    assert code == 0, err
    assert err == ""
    assert out.count("\n") > 1  # indented
    body = orjson.loads(out)
    assert set(body) == RESPONSE_KEYS
    assert len(body["output"].split()) == 3
    assert body["partial"] is False


async def test_ws_cli_2_json_prints_one_compact_line() -> None:
    """WS-CLI-2: --json prints the JSON body compact, on one line."""
    async with _serving() as running:
        code, out, err = await _ws(
            running, "fal-ai/any-llm", '{"prompt": "Respond in 4 words."}', "--json"
        )
    assert code == 0, err
    assert out.count("\n") == 1
    assert len(orjson.loads(out)["output"].split()) == 4


@pytest.mark.parametrize(
    ("app", "extra"),
    [("fal-ai/any-llm/stream", ()), ("fal-ai/any-llm", ("--path", "stream"))],
)
async def test_ws_cli_3_stream_prints_growing_outputs_line_by_line(
    app: str, extra: tuple[str, ...]
) -> None:
    """WS-CLI-3: --stream against any-llm/stream prints each event's data on a line, growing."""
    async with _serving() as running:
        code, out, err = await _ws(
            running, app, '{"prompt": "Respond in 7 words."}', "--stream", *extra
        )
    assert code == 0, err
    assert err == ""
    _assert_growing([orjson.loads(line) for line in out.splitlines()], 7)


async def test_ws_cli_4_stream_prints_each_event_as_it_arrives() -> None:
    """WS-CLI-4: --stream prints an event before the server has sent the next one."""
    release = asyncio.Event()

    async def held_stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: event\ndata: {"n": 1}\n\n')
        async with asyncio.timeout(CHILD_WAIT):
            await release.wait()  # until the test has seen the first line
        await response.write(b"data: plain text\n\n")
        await response.write_eof()
        return response

    gateway = Gateway(keys=[KEY])
    gateway.http_app("me/held", upstream=held_stream)
    async with _serving(gateway) as running:
        proc = await start(
            *_ws_args("me/held", "{}", "--stream", "--base-url", running.ws_url, "--key", KEY)
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(CHILD_WAIT):
                first = await proc.stdout.readline()
            assert first == b'{"n":1}\n'
            assert proc.returncode is None
        finally:
            release.set()
            code, rest, err = await finish(proc)
    assert code == 0, err
    assert rest == "plain text\n"  # data that is not JSON prints as it is


async def test_ws_cli_5_stream_of_a_json_body_writes_the_raw_chunks() -> None:
    """WS-CLI-5: --stream of a response that is not an event stream writes its bytes as sent."""
    async with _serving() as running:
        code, out, err = await _ws(
            running, "fal-ai/any-llm", '{"prompt": "Respond in 2 words."}', "--stream"
        )
    assert code == 0, err
    assert "\n" not in out
    assert set(orjson.loads(out)) == RESPONSE_KEYS


@pytest.mark.parametrize("extra", [(), ("--stream",)])
async def test_ws_cli_6_an_unknown_app_exits_1_with_one_line(extra: tuple[str, ...]) -> None:
    """WS-CLI-6: an app the gateway answers 404 for exits 1: one 'error: INVALID_INPUT' line."""
    async with _serving() as running:
        code, out, err = await _ws(running, "fal-ai/no-such-app", '{"prompt": "x"}', *extra)
    assert code == 1
    line = one_error_line(err)
    assert line.startswith("fal-realtime: error: INVALID_INPUT: ")
    assert "404" in line
    assert out == ""


@pytest.mark.parametrize("payload", ['{"prompt": ', "{'a': 1}", ""])
async def test_ws_cli_7_bad_json_exits_2(payload: str) -> None:
    """WS-CLI-7: a JSON argument that is not valid JSON exits 2 with one line, nothing sent."""
    code, out, err = await run(*_ws_args("fal-ai/any-llm", payload))
    assert code == 2
    assert "not valid JSON" in one_error_line(err)
    assert out == ""


async def test_ws_cli_8_a_refused_key_exits_1_without_echoing_it() -> None:
    """WS-CLI-8: a key the gateway refuses exits 1 with one UNAUTHORIZED line (key not shown)."""
    async with _serving() as running:
        code, out, err = await run(
            *_ws_args(
                "fal-ai/any-llm", "{}", "--base-url", running.ws_url, "--key", "id:wrong-secret"
            )
        )
    assert code == 1
    assert one_error_line(err).startswith("fal-realtime: error: UNAUTHORIZED: ")
    assert "wrong-secret" not in err
    assert out == ""


async def test_ws_cli_9_help_shows_examples() -> None:
    """WS-CLI-9: `fal-realtime ws --help` exits 0 and shows the options and examples."""
    code, out, err = await run(*_ws_args("--help"))
    assert code == 0, err
    for text in ("--stream", "--path", "--base-url", "--timeout", "--json", "examples:"):
        assert text in out
