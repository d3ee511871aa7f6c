"""USR-TEST: the fal_gateway fixture as a user's own test files use it (pytester inner runs).

Each inner run is a small project of its own (its ini, its tests), run in-process with
warnings as errors; the tests in it rely on nothing but the fixture and the public API.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import fal_realtime.pytest_plugin

pytest_plugins = ["pytester"]

#: What every inner test module starts with: application code that knows nothing of tests.
APP_CODE = '''
import asyncio
import threading

import fal_realtime

WAIT = 10.0


async def echo_once(payload):
    """Application code: send one payload to fal-ai/echo, return the first result."""
    results = asyncio.Queue()
    conn = await fal_realtime.connect("fal-ai/echo", on_result=results.put_nowait)
    try:
        await conn.send(payload)
        return await asyncio.wait_for(results.get(), WAIT)
    finally:
        await conn.close()


async def ask_llm(prompt):
    """Application code: one HTTP-over-WebSocket request to fal-ai/any-llm."""
    async with fal_realtime.ws("fal-ai/any-llm") as client:
        return (await client.request({"prompt": prompt})).json()
'''

ASYNC_TESTS = '''

{marker}
async def test_realtime_reaches_the_gateway(fal_gateway):
    """The app's connect() reaches the fixture's gateway through FAL_RUN_HOST."""
    assert await echo_once({{"a": 1}}) == {{"echo": {{"a": 1}}}}


{marker}
async def test_http_over_ws_reaches_the_gateway(fal_gateway):
    """The app's ws() reaches it through FAL_WS_RUN_HOST."""
    answer = await ask_llm("hello in 3 words")
    assert len(answer["output"].split()) == 3


{marker}
async def test_own_handler(fal_gateway):
    """A handler the test registers serves the app's calls."""
    seen = threading.Event()

    @fal_gateway.realtime("fal-ai/echo")
    async def fake(input: dict) -> dict:
        seen.set()
        return {{"faked": input["a"]}}

    assert await echo_once({{"a": 2}}) == {{"faked": 2}}
    assert seen.is_set()
'''


#: pytest-asyncio warns (an error here) when a project leaves its fixture loop scope unset.
QUIET_ASYNCIO = "asyncio_default_fixture_loop_scope = function"


def _run(pytester: pytest.Pytester, ini: str, body: str, passed: int) -> None:
    pytester.makeini(f"[pytest]\n{ini or QUIET_ASYNCIO}\n")
    pytester.makepyfile(test_user=APP_CODE + body)
    result = pytester.runpytest_inprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=passed, warnings=0)


def test_usr_test_1_sync_tests_use_the_fixture(pytester: pytest.Pytester) -> None:
    """USR-TEST-1: a plain sync test (its own asyncio.run, as around TestClient) reaches it."""
    body = '''

def test_sync(fal_gateway):
    """No event loop of the test's own: the gateway still answers."""
    assert asyncio.run(echo_once({"s": 1})) == {"echo": {"s": 1}}
    assert fal_gateway.base_url.startswith("ws://127.0.0.1:")


def test_faults(fal_gateway):
    """set_faults reaches the running gateway."""
    fal_gateway.set_faults("fal-ai/echo", "reject_status=503;connections=1")
    assert asyncio.run(echo_once({"s": 2})) == {"echo": {"s": 2}}  # the client retried
'''
    _run(pytester, "", body, passed=2)


@pytest.mark.parametrize("loop_scope", ["function", "module"])
def test_usr_test_2_pytest_asyncio_strict_mode(pytester: pytest.Pytester, loop_scope: str) -> None:
    """USR-TEST-2: in strict mode, marked async tests use it, on a function or module loop."""
    marker = f'@pytest.mark.asyncio(loop_scope="{loop_scope}")'
    body = "\nimport pytest\n" + ASYNC_TESTS.format(marker=marker)
    ini = "asyncio_mode = strict\nasyncio_default_fixture_loop_scope = function"
    _run(pytester, ini, body, passed=3)


def test_usr_test_3_pytest_asyncio_auto_mode_with_a_session_loop(
    pytester: pytest.Pytester,
) -> None:
    """USR-TEST-3: in auto mode, unmarked async tests use it, even on one session-wide loop."""
    ini = (
        "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = session\n"
        "asyncio_default_test_loop_scope = session"
    )
    _run(pytester, ini, ASYNC_TESTS.format(marker=""), passed=3)


def test_usr_test_4_replay_through_the_fixture(pytester: pytest.Pytester) -> None:
    """USR-TEST-4: a recording made with record= replays through fal_gateway.replay."""
    body = '''

def test_record_then_replay(fal_gateway, tmp_path):
    """Record against the gateway, then replay it as another app: the same results."""
    path = tmp_path / "echo.jsonl"

    async def record():
        results = asyncio.Queue()
        conn = await fal_realtime.connect(
            "fal-ai/echo", on_result=results.put_nowait, record=path
        )
        await conn.send({"n": 1})
        first = await asyncio.wait_for(results.get(), WAIT)
        await conn.close()
        return first

    live = asyncio.run(record())
    fal_gateway.replay("me/replayed", path, speed=0)

    async def replayed():
        results = asyncio.Queue()
        conn = await fal_realtime.connect("me/replayed", on_result=results.put_nowait)
        await conn.send({"n": 1})
        first = await asyncio.wait_for(results.get(), WAIT)
        await conn.close()
        return first

    assert asyncio.run(replayed()) == live == {"echo": {"n": 1}}
'''
    _run(pytester, "", body, passed=1)


def test_usr_test_5_the_plugin_adds_only_the_fixture(pytester: pytest.Pytester) -> None:
    """USR-TEST-5: no hooks, options or autouse fixtures: tests without it run as before."""
    hooks = [name for name in vars(fal_realtime.pytest_plugin) if name.startswith("pytest_")]
    assert hooks == []
    pytester.makeini(f"[pytest]\n{QUIET_ASYNCIO}\n")
    pytester.makepyfile(
        test_plain='''
import os

def test_env_untouched():
    """Without the fixture nothing points FAL_RUN_HOST anywhere."""
    assert os.environ.get("FAL_RUN_HOST") == "untouched"
'''
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FAL_RUN_HOST", "untouched")
        result = pytester.runpytest_inprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, warnings=0)
    fixtures = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")
    fixtures.stdout.fnmatch_lines(["*fal_gateway*"])


def test_usr_test_9_the_example_test_file_passes(pytester: pytest.Pytester) -> None:
    """USR-TEST-9: examples/test_with_fal_gateway.py, with its recording, passes as shipped."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    shutil.copy(examples / "test_with_fal_gateway.py", pytester.path)
    shutil.copytree(examples / "recordings", pytester.path / "recordings")
    pytester.makeini(f"[pytest]\nasyncio_mode = strict\n{QUIET_ASYNCIO}\n")
    result = pytester.runpytest_inprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, warnings=0)
