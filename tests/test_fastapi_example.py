"""USR-FASTAPI: examples/fastapi_app.py, served by uvicorn, driven over HTTP and WebSocket.

Each test serves the gateway in-process (the `running` fixture: demo apps, KEY) and runs
`python -m uvicorn examples.fastapi_app:app --port 0` in a child pointed at it by
FAL_RUN_HOST / FAL_KEY, as the example's docstring says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fal_realtime.server import Gateway, RunningGateway

from .conftest import KEY, MS

pytest.importorskip(
    "fastapi", reason="the FastAPI example needs fastapi and uvicorn: pip install -e '.[examples]'"
)
pytest.importorskip(
    "uvicorn", reason="the FastAPI example needs fastapi and uvicorn: pip install -e '.[examples]'"
)

ROOT = Path(__file__).resolve().parent.parent
APP = "fal-ai/flux-lora-realtime"
#: The children run as a user would: without the suite's asyncio debug mode.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
#: The longest the child may take to start or to stop (it imports FastAPI).
CHILD_WAIT = 60_000 * MS
#: The longest one request or one relayed message may take.
WAIT = 10_000 * MS
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIRTY = ("Traceback", "Task was destroyed", "Unclosed", "never awaited")


class Service:
    """The example running under uvicorn in a child, and everything it logged."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.url = ""
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="uvicorn-output")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    async def wait_for_line(self, pattern: re.Pattern[str], wait_s: float = WAIT) -> re.Match[str]:
        """Return the first match of ``pattern`` in the output, waiting for it (bounded)."""
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    for line in self.lines:
                        if match := pattern.search(line):
                            return match
                    if self._reader is not None and self._reader.done():
                        break
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise AssertionError(f"no line matching {pattern.pattern!r} in:\n{self.output}")

    async def stop(self) -> int:
        """Press Ctrl-C, wait (bounded) for the exit and the rest of the output; return the code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        reader, self._reader = self._reader, None
        try:
            async with asyncio.timeout(CHILD_WAIT):
                await self.proc.wait()
                if reader is not None:
                    await asyncio.shield(reader)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        assert self.proc.returncode is not None
        return self.proc.returncode


@contextlib.asynccontextmanager
async def serving_example(
    running: RunningGateway, env: dict[str, str] | None = None
) -> AsyncIterator[Service]:
    """Run the example under uvicorn on a free port, pointed at ``running``; stop it after."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "examples.fastapi_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**CHILD_ENV, "FAL_RUN_HOST": running.ws_url, "FAL_KEY": KEY, **(env or {})},
    )
    service = Service(proc)
    service.start_reading()
    try:
        port = (await service.wait_for_line(RUNNING, CHILD_WAIT)).group(1)
        service.url = f"http://127.0.0.1:{port}"
        yield service
    finally:
        await service.stop()


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with asyncio.timeout(WAIT), http.post(url, json=body) as response:
        return response.status, await response.json()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with asyncio.timeout(WAIT), http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _poll(http: aiohttp.ClientSession, url: str, done: Callable[[Any], bool]) -> Any:
    """GET ``url`` until ``done(body)`` holds (bounded); return the body."""
    async with asyncio.timeout(WAIT):
        while True:  # another process's state: nothing to wait on but the next answer
            body = await _get(http, url)
            if done(body):
                return body
            await asyncio.sleep(20 * MS)


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        message: dict[str, Any] = await ws.receive_json()
    return message


def _png_of(result: dict[str, Any]) -> bytes:
    url = result["images"][0]["url"]
    assert url.startswith("data:image/png;base64,")
    return base64.b64decode(url.partition(",")[2])


async def test_usr_fastapi_1_generate_returns_an_image(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-1: POST /generate sends a prompt on the shared connection, answers its image."""
    async with serving_example(running) as service:
        status, result = await _post(
            http, f"{service.url}/generate", {"prompt": "a tiger eye", "seed": 7}
        )
        assert status == 200, result
        assert result["seed"] == 7
        assert _png_of(result)[:8] == PNG_SIGNATURE
        assert (result["images"][0]["width"], result["images"][0]["height"]) == (128, 72)


async def test_usr_fastapi_2_concurrent_generates_get_their_own_results(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-2: concurrent /generate calls each get the result of their own input."""
    async with serving_example(running) as service:
        prompts = [f"prompt number {i}" for i in range(5)]
        answers = await asyncio.gather(
            *(_post(http, f"{service.url}/generate", {"prompt": p}) for p in prompts)
        )
        assert [status for status, _ in answers] == [200] * 5
        seeds = [result["seed"] for _, result in answers]
        assert len(set(seeds)) == 5  # a seed per request, each answered once
        stats = (await _get(http, f"{service.url}/stats"))["shared"]
        assert stats["coalesced"] == 0  # the shared connection keeps every input


async def test_usr_fastapi_3_results_fill_up(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-3: the background collector stores every result; GET /results shows them."""
    async with serving_example(running) as service:
        assert await _get(http, f"{service.url}/results") == {"received": 0, "results": []}
        for seed in (1, 2, 3):
            status, _ = await _post(http, f"{service.url}/generate", {"prompt": "x", "seed": seed})
            assert status == 200
        stored = await _poll(http, f"{service.url}/results", lambda b: b["received"] >= 3)
        assert stored["received"] == 3
        assert [result["seed"] for result in stored["results"]] == [1, 2, 3]


async def test_usr_fastapi_4_stats_count_the_shared_connection(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-4: GET /stats shows the shared connection open with sent/results counted."""
    async with serving_example(running) as service:
        before = await _get(http, f"{service.url}/stats")
        assert before["shared"]["state"] == "open"
        assert before["shared"]["sent"] == 0
        assert before["users"] == {}
        for _ in range(2):
            status, _ = await _post(http, f"{service.url}/generate", {"prompt": "count me"})
            assert status == 200
        after = await _get(http, f"{service.url}/stats")
        shared = after["shared"]
        assert (shared["sent"], shared["results"], shared["errors"]) == (2, 2, 0)
        assert shared["last_latency_s"] is not None and shared["last_latency_s"] > 0


async def test_usr_fastapi_5_ws_relays_per_user_and_closes_when_the_user_leaves(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-5: /ws relays inputs and results; a user's tabs share one connection,
    closed when the last tab leaves."""
    async with serving_example(running) as service:
        ws_url = service.url.replace("http://", "ws://") + "/ws?user=alice"
        async with asyncio.timeout(WAIT):
            tab1 = await http.ws_connect(ws_url)
            tab2 = await http.ws_connect(ws_url)
        try:
            await tab1.send_json({"prompt": "a red fox", "seed": 11})
            for tab in (tab1, tab2):  # both tabs of alice see alice's result
                message = await _receive(tab)
                assert message["type"] == "result", message
                assert message["result"]["seed"] == 11
                assert _png_of(message["result"])[:8] == PNG_SIGNATURE
                assert message["stats"]["results"] >= 1
            users = (await _get(http, f"{service.url}/stats"))["users"]
            assert list(users) == ["alice"]
            assert users["alice"]["sent"] == 1
            await tab1.close()
            # One tab left: alice's connection stays.
            await tab2.send_json({"prompt": "a blue fox", "seed": 12})
            message = await _receive(tab2)
            assert (message["type"], message["result"]["seed"]) == ("result", 12)
        finally:
            await tab1.close()
            await tab2.close()
        stats = await _poll(http, f"{service.url}/stats", lambda b: b["users"] == {})
        assert stats["shared"]["sent"] == 0  # the relay never touches the shared connection
        await service.wait_for_line(re.compile(r"fal: closed alice's connection \(user left\)"))


async def test_usr_fastapi_6_ws_answers_bad_input_and_stays_usable(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-6: /ws answers an input that is not {"prompt": str} with an error; relays on."""
    async with serving_example(running) as service:
        async with asyncio.timeout(WAIT):
            ws = await http.ws_connect(service.url.replace("http://", "ws://") + "/ws")
        try:
            for bad in ("not json", "[1, 2]", '{"prompt": 3}'):
                await ws.send_str(bad)
                message = await _receive(ws)
                assert (message["type"], message["code"]) == ("error", "INVALID_INPUT"), message
            await ws.send_json({"prompt": "still here", "seed": 5})
            message = await _receive(ws)
            assert (message["type"], message["result"]["seed"]) == ("result", 5)
        finally:
            await ws.close()


async def test_usr_fastapi_7_generate_times_out_with_504(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-7: /generate answers 504 when no result comes within GENERATE_TIMEOUT_S."""
    gateway.set_faults("fal-ai/flux-lora-realtime", "delay_ms=2000")
    async with serving_example(running, env={"GENERATE_TIMEOUT_S": "0.3"}) as service:
        status, body = await _post(http, f"{service.url}/generate", {"prompt": "slow"})
        assert status == 504
        assert body == {"detail": "no result within 0.3 s"}
        # The late result still reaches the store.
        stored = await _poll(http, f"{service.url}/results", lambda b: b["received"] == 1)
        assert stored["results"][0]["images"]


async def test_usr_fastapi_8_shutdown_closes_the_connections_cleanly(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-8: Ctrl-C closes the shared and the users' connections with 1000, exit 0."""
    async with serving_example(running) as service:
        status, _ = await _post(http, f"{service.url}/generate", {"prompt": "one"})
        assert status == 200
        async with asyncio.timeout(WAIT):
            ws = await http.ws_connect(service.url.replace("http://", "ws://") + "/ws?user=bob")
        await ws.send_json({"prompt": "bob"})
        assert (await _receive(ws))["type"] == "result"
        code = await service.stop()
        await ws.close()
    assert code == 0, service.output
    output = service.output
    assert "fal: shared connection closed (1000)" in output
    assert "fal: shared connection closed, stats" in output
    assert "fal: closed bob's connection (user left)" in output
    assert "Application shutdown complete." in output
    for dirty in DIRTY:
        assert dirty not in output, output


async def test_usr_fastapi_9_metrics_in_prometheus_text(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-FASTAPI-9: GET /metrics answers the connections' OpenTelemetry metrics (Prometheus)."""
    for module in ("prometheus_client", "opentelemetry.exporter.prometheus"):
        pytest.importorskip(module, reason="pip install -e '.[examples]' for GET /metrics")
    async with serving_example(running) as service:
        status, result = await _post(http, f"{service.url}/generate", {"prompt": "an eye"})
        assert status == 200, result
        async with asyncio.timeout(WAIT), http.get(f"{service.url}/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            text = await response.text()
    app = f'fal_app_id="{APP}"'
    assert re.search(rf"^fal_realtime_results_total\{{.*{app}.*\}} 1\.0$", text, re.M), text
    assert re.search(rf"^fal_realtime_sent_total\{{.*{app}.*\}} 1\.0$", text, re.M)
    assert re.search(r'^fal_realtime_connections\{.*state="open".*\} 1\.0$', text, re.M)
    assert "fal_realtime_result_latency_seconds_bucket" in text
    assert "fal_realtime_connect_duration_seconds_count" in text
    assert KEY not in text and KEY.split(":")[1] not in text
