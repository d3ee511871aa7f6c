"""PROXY-JS: the unmodified @fal-ai/client 1.10.1, in Node, through our proxy (issue 20).

The client is installed from npm once into a cache directory (``~/.cache`` or
``FAL_RT_NPM_CACHE``); the tests are skipped, with the reason, when node or npm is
missing or the install fails. The gateway serves TLS with a throwaway trustme CA that
Node trusts through ``NODE_EXTRA_CA_CERTS`` (fal's client only speaks https/wss); the
proxy (aiohttp ``add_subapp`` or FastAPI ``mount`` under uvicorn) forwards to it
because ``FAL_RUN_HOST``/``FAL_REST_URL`` point there. The Node process holds no key.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from fal_realtime.proxy import ProxyRequest
from fal_realtime.server import Gateway, RunningGateway

from .conftest import KEY, MS
from .proxy_tools import serve_proxy

FAL_CLIENT = "@fal-ai/client@1.10.1"
HARNESS = Path(__file__).parent / "js" / "fal_client_proxy.cjs"
NODE_WAIT = 60_000 * MS
ADAPTERS = pytest.mark.parametrize("kind", ["aiohttp", "asgi"])


def _install_fal_client() -> Path:
    """Install @fal-ai/client into the cache once; return its node_modules (or skip)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs node and npm to run @fal-ai/client (Debian: apt-get install nodejs npm)")
    root = Path(os.environ.get("FAL_RT_NPM_CACHE", Path.home() / ".cache" / "fal-realtime-tests"))
    prefix = root / "fal-ai-client-1.10.1"
    modules = prefix / "node_modules"
    if (modules / "@fal-ai" / "client" / "package.json").exists():
        return modules
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", FAL_CLIENT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"npm install {FAL_CLIENT} failed: {last}")
    return modules


@functools.cache
def _websocket_flags() -> tuple[str, ...]:
    """Return the flag Node needs for a global WebSocket (Node 20; none from Node 22)."""
    probe = subprocess.run(
        ["node", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return () if probe.returncode == 0 else ("--experimental-websocket",)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """Return the node_modules holding @fal-ai/client 1.10.1."""
    return _install_fal_client()


@pytest.fixture
async def tls_gateway(
    gateway: Gateway, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningGateway]:
    """Serve ``gateway`` over TLS; point fal's hosts (for the proxy) at it."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    async with gateway.serve("127.0.0.1", 0, ssl_context=server_ctx) as running:
        monkeypatch.setenv("FAL_RUN_HOST", f"127.0.0.1:{running.port}")
        monkeypatch.setenv("FAL_REST_URL", running.url)
        for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
            monkeypatch.delenv(name, raising=False)
        yield running


def _client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _run_node(
    scenario: str, *, proxy_url: str, gateway: RunningGateway, modules: Path, ca_pem: Path
) -> dict[str, Any]:
    """Run the harness's ``scenario`` in Node; return its JSON line."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FAL_") and k not in ("PYTHONASYNCIODEBUG", "NODE_OPTIONS")
    }
    env |= {
        "PROXY": proxy_url,
        "GATEWAY": f"127.0.0.1:{gateway.port}",
        "NODE_PATH": str(modules),
        "NODE_EXTRA_CA_CERTS": str(ca_pem),
        "NO_PROXY": "*",
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        *_websocket_flags(),
        "--no-warnings",
        str(HARNESS),
        scenario,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(NODE_WAIT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"node {scenario} failed:\n{err.decode()}"
    assert KEY not in out.decode() + err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


#: Runs a harness scenario in Node against a proxy (of ``kind``) for one app; returns the
#: scenario's JSON line and what the proxy's authorize saw.
NodeRun = Callable[[str, str, str], Awaitable[tuple[dict[str, Any], list[str]]]]


@pytest.fixture
def through_proxy(
    tls_gateway: RunningGateway, node_modules: Path, ca: trustme.CA, ca_pem: Path
) -> NodeRun:
    """Return ``run(kind, scenario, app)``: serve the proxy, run the scenario in Node."""

    async def run(kind: str, scenario: str, app: str) -> tuple[dict[str, Any], list[str]]:
        seen: list[str] = []

        def authorize(request: ProxyRequest) -> bool:
            seen.append(request.header("x-fal-target-url") or request.route)
            return request.client == "127.0.0.1"

        async with serve_proxy(
            kind,
            key=KEY,
            allowed_apps=[app],
            authorize=authorize,
            ssl_context=_client_ssl(ca),
        ) as url:
            result = await _run_node(
                scenario, proxy_url=url, gateway=tls_gateway, modules=node_modules, ca_pem=ca_pem
            )
        return result, seen

    return run


@ADAPTERS
async def test_proxy_js_1_realtime_connect_with_proxy_url(
    kind: str, through_proxy: NodeRun, issued: list[list[str]]
) -> None:
    """PROXY-JS-1: fal.realtime.connect with proxyUrl: the token comes through our proxy
    (rest.fal.ai/tokens/), the socket goes to the gateway, the echo comes back."""
    result, seen = await through_proxy(kind, "proxy-realtime", "fal-ai/echo")
    assert result["results"] == [{"echo": {"prompt": "hi from node", "n": 2}}]
    assert result["errors"] == []
    assert seen == ["https://rest.fal.ai/tokens/"]
    assert issued == [["echo"]]
    assert result["opened"] == ["wss://fal.run/fal-ai/echo/realtime?fal_jwt_token=***"]


@ADAPTERS
async def test_proxy_js_2_realtime_connect_with_token_provider(
    kind: str, through_proxy: NodeRun, issued: list[list[str]]
) -> None:
    """PROXY-JS-2: fal.realtime.connect with a tokenProvider that calls {prefix}/token: fal-js
    asks for 'fal-ai/echo/realtime', our route answers, the echo comes back."""
    result, seen = await through_proxy(kind, "token-provider", "fal-ai/echo")
    assert result["results"] == [{"echo": {"prompt": "hi from node", "n": 2}}]
    assert result["tokenApps"] == ["fal-ai/echo/realtime"]
    assert seen == ["/token"]
    assert issued == [["echo"]]


@ADAPTERS
async def test_proxy_js_3_stream_and_run_through_the_proxy(
    kind: str, through_proxy: NodeRun
) -> None:
    """PROXY-JS-3: fal.stream (SSE) and fal.run through the proxy get any-llm's partial
    events and final answer from the gateway."""
    result, seen = await through_proxy(kind, "stream", "fal-ai/any-llm")
    events = result["results"]
    assert len(events) > 2
    assert all(event["partial"] for event in events[:-1])
    assert events[-1]["partial"] is False
    assert len(events[-1]["output"].split()) == 12
    assert result["done"] == events[-1]
    assert len(result["run"]["output"].split()) == 3
    assert result["requestId"]
    assert seen == ["https://fal.run/fal-ai/any-llm/stream", "https://fal.run/fal-ai/any-llm"]
