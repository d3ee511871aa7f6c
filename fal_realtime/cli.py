"""The ``fal-realtime`` command: run the local gateway, or a demo against it.

fal-realtime demo                       # gateway + demo apps in-process, this client against it
fal-realtime serve --demo --port 8080   # a gateway for your own clients
fal-realtime send fal-ai/echo '{"a": 1}' --base-url ws://127.0.0.1:8080
fal-realtime ws fal-ai/any-llm/stream '{"prompt": "hi"}' --stream   # HTTP over WebSockets
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import TIMEOUT, RealtimeError, RealtimeTimeoutError

if TYPE_CHECKING:
    from .http_ws import HttpWsConnection

__all__ = ["main"]

EPILOG_SEND = """examples:
  fal-realtime send fal-ai/echo '{"a": 1}' --base-url ws://127.0.0.1:8080 --key KEY
  FAL_RUN_HOST=ws://127.0.0.1:8080 FAL_KEY=KEY \\
    fal-realtime send fal-ai/flux-lora-realtime '{"prompt": "a tiger eye"}' --json

Binary values in the result print as <N bytes>. Exit status: 0 with a result,
1 on an error from the app or the connection (one line on stderr), 2 on bad arguments.
"""

EPILOG_WS = """examples:
  fal-realtime ws fal-ai/any-llm '{"prompt": "Respond in 3 words."}' \\
    --base-url ws://127.0.0.1:8080 --key KEY
  FAL_WS_RUN_HOST=ws://127.0.0.1:8080 FAL_KEY=KEY \\
    fal-realtime ws fal-ai/any-llm/stream '{"prompt": "Respond in 9 words."}' --stream
  fal-realtime ws fal-ai/any-llm '{"prompt": "hi"}' --path stream --stream

The body prints as indented JSON when it is JSON (--json: one compact line), else as
text; a body that is not UTF-8 is written as it is. With --stream the body prints as it
arrives: a text/event-stream response one line per event (its data, compact JSON when it
is JSON), any other response chunk by chunk. Exit status: 0 with a response below 400,
1 on an error status or a connection error (one line on stderr), 2 on bad arguments.
"""

EPILOG_SERVE = """examples:
  fal-realtime serve --demo                       demo apps on http://127.0.0.1:8080
  fal-realtime serve --demo --port 0 --no-auth    any free port, no keys
  fal-realtime serve --upstream me/api=http://127.0.0.1:8000
  fal-realtime serve --demo --fault fal-ai/echo=drop_after=3;drop_mode=abort
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fal-realtime",
        description="Realtime and HTTP-over-WebSocket client for fal.ai, with a local gateway.",
        epilog=(
            "examples:\n"
            "  fal-realtime demo                               gateway + client, one process\n"
            "  fal-realtime serve --demo                       a local gateway on :8080\n"
            "  fal-realtime send fal-ai/echo '{\"a\": 1}'        one realtime payload\n"
            '  fal-realtime ws fal-ai/any-llm \'{"prompt": "hi"}\' --stream\n'
            "  fal-realtime bench                              the quick benchmark\n"
            "\nenvironment: FAL_KEY (or FAL_KEY_ID + FAL_KEY_SECRET), FAL_RUN_HOST, "
            "FAL_WS_RUN_HOST.\nEach command's --help has more examples."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the local gateway",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    serve.add_argument("--demo", action="store_true", help="host the demo apps")
    serve.add_argument("--no-auth", action="store_true", help="accept every connection")
    serve.add_argument(
        "--max-connections-per-key",
        type=int,
        default=1000,
        metavar="N",
        help="concurrent WebSockets per key or token holder (0: no limit; default 1000)",
    )
    serve.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY",
        help="accepted key (repeatable; default FAL_KEY, else a printed development key)",
    )
    serve.add_argument("--certfile", help="TLS certificate (serve wss://)")
    serve.add_argument("--keyfile", help="TLS private key")
    serve.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="OWNER/APP=URL",
        help="front an HTTP app over HTTP-over-WebSockets (repeatable)",
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="OWNER/APP=SPEC",
        help="inject faults into an app, e.g. fal-ai/echo=drop_after=3 (repeatable)",
    )

    demo = sub.add_parser(
        "demo",
        help="run the gateway and a client against it, in one process",
        epilog="examples:\n  fal-realtime demo --out-dir /tmp/images\n"
        "  fal-realtime demo --web            a web page: type a prompt, watch images arrive",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out-dir", default=".", help="where to save images (default .)")
    demo.add_argument(
        "--web",
        action="store_true",
        help="serve the web playground instead, until Ctrl-C",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"with --web: the port to serve on (default {DEMO_WEB_PORT}; 0 picks a free one)",
    )

    send = sub.add_parser(
        "send",
        help="send one realtime payload and print the first result",
        description="Connect to a realtime app, send one JSON payload, print the first result.",
        epilog=EPILOG_SEND,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("app", metavar="APP", help="the app id, e.g. fal-ai/flux-lora-realtime")
    send.add_argument("payload", metavar="JSON", help="the payload: a JSON object")
    send.add_argument(
        "--base-url",
        metavar="URL",
        help="where to connect, e.g. ws://127.0.0.1:8080 (default FAL_RUN_HOST, else fal.run)",
    )
    send.add_argument(
        "--key", metavar="K", help="the fal key (default FAL_KEY; prefer it: argv is visible)"
    )
    send.add_argument(
        "--path", metavar="P", default="/realtime", help="the realtime path (default /realtime)"
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the result, connecting included (default 30)",
    )
    send.add_argument(
        "--json", action="store_true", help="print the result as compact JSON on one line"
    )

    ws = sub.add_parser(
        "ws",
        help="send one HTTP-over-WebSocket request and print the response body",
        description=(
            "Open an HTTP-over-WebSocket connection to an app, send one JSON body (what you "
            "would POST over HTTP), print the response body."
        ),
        epilog=EPILOG_WS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ws.add_argument("app", metavar="APP", help="the app id, e.g. fal-ai/any-llm")
    ws.add_argument("payload", metavar="JSON", help="the request body: any JSON value")
    ws.add_argument(
        "--path", metavar="P", default="", help="a path under the app, e.g. stream (default none)"
    )
    ws.add_argument(
        "--stream",
        action="store_true",
        help="print the body as it arrives (Server-Sent Events: each event's data on a line)",
    )
    ws.add_argument(
        "--base-url",
        metavar="URL",
        help="where to connect, e.g. ws://127.0.0.1:8080 (default FAL_WS_RUN_HOST, else "
        "ws.fal.run)",
    )
    ws.add_argument(
        "--key", metavar="K", help="the fal key (default FAL_KEY; prefer it: argv is visible)"
    )
    ws.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the response, connecting included; with --stream, for the "
        "start and then for each next chunk (default 30)",
    )
    ws.add_argument(
        "--json", action="store_true", help="print a JSON body as compact JSON on one line"
    )

    bench = sub.add_parser(
        "bench",
        help="run the benchmark suite (quick by default) from a source checkout",
        description=(
            "Run python -m benchmarks against this project's peers on loopback. The suite "
            "lives in the source tree (benchmarks/), next to the package of an editable "
            "install: pip install -e '.[bench]'."
        ),
        epilog=(
            "examples:\n  fal-realtime bench                       the quick run (under a minute)\n"
            "  fal-realtime bench --full --json b.json  all scenarios, full rounds\n"
            "  fal-realtime bench --only lockstep,reconnect"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--full", action="store_true", help="the full run (5-10 minutes)")
    bench.add_argument("--only", metavar="NAMES", help="comma-separated scenarios to run")
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    bench.add_argument("--plot", metavar="FILE", help="save a PNG chart (needs matplotlib)")
    return parser


def _bench(args: argparse.Namespace) -> int:
    """Run the source tree's benchmark suite in a child process; return its exit status."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise ValueError(
            "the benchmark suite is not next to this install: run it from a clone of the "
            "repository installed with pip install -e '.[bench]'"
        )
    command = [sys.executable, "-m", "benchmarks"]
    if not args.full:
        command.append("--quick")
    for flag in ("only", "json", "plot"):
        if value := getattr(args, flag):
            command += [f"--{flag}", value]
    return subprocess.call(command, cwd=root)


def _fail(message: str) -> int:
    print(f"fal-realtime: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            # Build everything that can refuse bad options before the loop starts.
            gateway, context = _build_gateway(args), _ssl_context(args)
            return asyncio.run(_serve(args, gateway, context))
        if args.command == "demo":
            if args.port is not None and not args.web:
                raise ValueError("--port goes with --web")
            return asyncio.run(_demo_web(args) if args.web else _demo(args))
        if args.command == "send":
            payload = _parse_payload(args.payload)
            if not args.timeout > 0:
                raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
            return asyncio.run(_send(args, payload))
        if args.command == "ws":
            body = _parse_json(args.payload)
            if not args.timeout > 0:
                raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
            return asyncio.run(_ws(args, body))
        if args.command == "bench":
            return _bench(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    return 2


# -- serve --------------------------------------------------------------------------


def _build_gateway(args: argparse.Namespace) -> Any:
    from .server import Gateway

    keys = list(args.key) or ([os.environ["FAL_KEY"]] if os.environ.get("FAL_KEY") else [])
    gateway = Gateway(
        keys=keys,
        auth=not args.no_auth,
        max_connections_per_key=args.max_connections_per_key or None,
    )
    if args.demo:
        from .server.demo import register_demo_apps

        register_demo_apps(gateway)
    for item in args.upstream:
        app_id, sep, url = item.partition("=")
        if not sep:
            raise ValueError(f"--upstream {item!r}: expected OWNER/APP=URL")
        gateway.http_app(app_id, upstream=url)
    for item in args.fault:
        app_id, sep, spec = item.partition("=")
        if not sep:
            raise ValueError(f"--fault {item!r}: expected OWNER/APP=SPEC")
        gateway.set_faults(app_id, spec)
    return gateway


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.certfile and not args.keyfile:
        return None
    if not (args.certfile and args.keyfile):
        raise ValueError("--certfile and --keyfile go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _serve(args: argparse.Namespace, gateway: Any, context: ssl.SSLContext | None) -> int:
    async with gateway.serve(args.host, args.port, ssl_context=context) as running:
        host_port = f"{running.host}:{running.port}"
        print(f"fal-realtime gateway listening on {running.url}", flush=True)
        if gateway.generated_key:
            print(f"development key (generated): {gateway.generated_key}")
            print(f"export FAL_KEY={gateway.generated_key}")
        elif not gateway.auth_enabled:
            print("auth: off (--no-auth); any key is accepted")
        else:
            print("auth: the key(s) you supplied")
        host = host_port if running.tls else running.ws_url
        print(f"export FAL_RUN_HOST={host}")
        print(f"export FAL_WS_RUN_HOST={host}")
        if running.tls:
            print(f"export FAL_REST_URL={running.url}")
        print("press Ctrl-C to stop", flush=True)
        await _wait_for_stop()
    print("gateway stopped", flush=True)
    return 0


# -- demo ---------------------------------------------------------------------------

DEMO_APP = "fal-ai/flux-lora-realtime"
DEMO_PROMPT = (
    "Extreme close-up of a single tiger eye, direct frontal view. Detailed iris and pupil. "
    "Sharp focus on eye texture and color. Natural lighting to capture authentic eye shine "
    'and depth. The word "FLUX" is painted over it in big, white brush strokes with '
    "visible texture."
)
DEMO_SEED = 6252023
DEMO_THROTTLE_S = 0.064
DEMO_BURST = 20
DEMO_WAIT_S = 30.0
DEMO_WEB_PORT = 8080


def _demo_input(prompt: str, *, seed: int = DEMO_SEED) -> dict[str, Any]:
    """Return the input of fal's realtime documentation, with ``prompt`` and ``seed``."""
    return {
        "prompt": prompt,
        "image_size": "landscape_16_9",
        "seed": seed,
        "num_inference_steps": 3,
        "sync_mode": True,
    }


class _ImageSaver:
    """The demo's callbacks: save every image as ``fal-realtime-demo-N.png``, keep errors."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.saved: list[Path] = []
        self.seeds: list[Any] = []
        self.errors: list[RealtimeError] = []
        self._changed = asyncio.Event()

    async def on_result(self, result: Any) -> None:
        """Save and report each image of ``result`` (results arrive one at a time, in order)."""
        images = result.get("images") if isinstance(result, dict) else None
        seed = result.get("seed") if isinstance(result, dict) else None
        for image in images or []:
            url = str(image.get("url", ""))
            size = f"{image.get('width')}x{image.get('height')}"
            if not url.startswith("data:"):
                print(f"realtime  {DEMO_APP} -> {size} image at {url}", flush=True)
                continue
            png = base64.b64decode(url.partition(",")[2])
            path = self.out_dir / f"fal-realtime-demo-{len(self.saved) + 1}.png"
            self.saved.append(path)
            await asyncio.to_thread(path.write_bytes, png)
            print(
                f"realtime  {DEMO_APP} -> {size} PNG, seed {seed}: saved {path} ({len(png)} bytes)",
                flush=True,
            )
        self.seeds.append(seed)
        self._changed.set()

    def on_error(self, error: RealtimeError) -> None:
        """Keep ``error``: the demo stops at the next wait."""
        self.errors.append(error)
        self._changed.set()

    async def wait_for(self, done: Callable[[], bool], what: str) -> None:
        """Wait until ``done()`` holds; raise the first error, or TIMEOUT after a while."""
        try:
            async with asyncio.timeout(DEMO_WAIT_S):
                while not (self.errors or done()):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise RealtimeTimeoutError(TIMEOUT, f"no {what} within {DEMO_WAIT_S:.0f} s") from None
        if self.errors:
            raise self.errors[0]


async def _demo(args: argparse.Namespace) -> int:
    from .server import Gateway
    from .server.demo import register_demo_apps

    out_dir = Path(args.out_dir)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    gateway = Gateway()
    register_demo_apps(gateway)
    key = gateway.generated_key
    assert key is not None  # Gateway() without keys generates one
    async with gateway.serve(port=0) as running:
        print(f"fal-realtime gateway listening on {running.url} (in-process demo)", flush=True)
        try:
            await _demo_realtime(running.ws_url, key, out_dir)
            output = await _demo_http_ws(running.ws_url, key)
        except RealtimeError as exc:
            return _error(exc)
        print(f"http-ws   fal-ai/any-llm -> {output}", flush=True)
    return 0


async def _demo_web(args: argparse.Namespace) -> int:
    """Serve the web playground (gateway, demo apps and page in-process) until Ctrl-C."""
    from .playground import PAGE_PATH, serve_playground

    port = DEMO_WEB_PORT if args.port is None else args.port
    async with serve_playground(port=port) as running:
        print(f"fal-realtime gateway listening on {running.url} (in-process demo)", flush=True)
        print(f"playground: {running.url}{PAGE_PATH}", flush=True)
        print("open it in a browser and type a prompt; press Ctrl-C to stop", flush=True)
        await _wait_for_stop()
    print("playground stopped", flush=True)
    return 0


async def _demo_realtime(base_url: str, key: str, out_dir: Path) -> None:
    """Run fal's realtime example on this client, then a burst that shows the throttle."""
    from .realtime import connect

    saver = _ImageSaver(out_dir)
    conn = await connect(
        DEMO_APP,
        on_result=saver.on_result,
        on_error=saver.on_error,
        base_url=base_url,
        key=key,
        throttle_interval=DEMO_THROTTLE_S,
    )
    async with conn:
        await conn.send(_demo_input(DEMO_PROMPT))
        await saver.wait_for(lambda: len(saver.seeds) >= 1, "result")

        # A user typing: each keystroke sends the longer prompt, with no pause. Let the
        # interval pass first so that the burst starts with a send that goes at once.
        await asyncio.sleep(DEMO_THROTTLE_S)
        stats = conn.stats
        sent, coalesced, results = stats.sent, stats.coalesced, stats.results
        words = DEMO_PROMPT.split()
        for i in range(1, DEMO_BURST + 1):
            prompt = " ".join(words[: -(-len(words) * i // DEMO_BURST)])
            # A seed per send lets the demo recognise the answer to the last one.
            await conn.send(_demo_input(prompt, seed=DEMO_SEED + i))
        last = DEMO_SEED + DEMO_BURST
        await saver.wait_for(lambda: last in saver.seeds, "result for the last send")
        print(
            f"burst: {DEMO_BURST} sends -> sent {stats.sent - sent}, "
            f"coalesced {stats.coalesced - coalesced}, results {stats.results - results} "
            f"(latest wins at {DEMO_THROTTLE_S * 1000:.0f} ms)",
            flush=True,
        )


async def _demo_http_ws(base_url: str, key: str) -> str:
    """Ask ``fal-ai/any-llm`` over HTTP over WebSockets; return its output."""
    from .http_ws import ws

    prompt = "What is the meaning of life? Respond in 12 words."
    try:
        async with (
            asyncio.timeout(DEMO_WAIT_S),
            ws("fal-ai/any-llm", base_url=base_url, key=key) as conn,
        ):
            response = await conn.request({"prompt": prompt})
    except TimeoutError:
        raise RealtimeTimeoutError(
            TIMEOUT, f"no HTTP-over-WebSocket response within {DEMO_WAIT_S:.0f} s"
        ) from None
    return str(response.raise_for_status().json()["output"])


# -- send ---------------------------------------------------------------------------

_JSON_TYPES = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _parse_json(text: str) -> Any:
    """Return the JSON value in ``text``; raise ValueError with a one-line reason."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"JSON argument is not valid JSON: {exc}") from None


def _parse_payload(text: str) -> dict[str, Any]:
    """Return the JSON object in ``text``; raise ValueError with a one-line reason."""
    value = _parse_json(text)
    if not isinstance(value, dict):
        kind = _JSON_TYPES.get(type(value), "a number")
        raise ValueError(f"JSON argument must be an object ({{...}}), not {kind}")
    return value


def _printable(value: Any) -> Any:
    """Return ``value`` with binary values replaced by ``"<N bytes>"``, ready for JSON."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, memoryview):
        return f"<{value.nbytes} bytes>"
    if isinstance(value, dict):
        return {
            (_printable(k) if isinstance(k, bytes | bytearray) else k): _printable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


def _format_result(result: Any, *, compact: bool) -> str:
    import orjson

    option = orjson.OPT_NON_STR_KEYS | (0 if compact else orjson.OPT_INDENT_2)
    return orjson.dumps(_printable(result), option=option, default=repr).decode()


def _error(error: RealtimeError) -> int:
    """Print ``error`` as one line on stderr; return exit status 1."""
    text = " ".join(str(error).split())
    print(f"fal-realtime: error: {text}", file=sys.stderr, flush=True)
    return 1


async def _send(args: argparse.Namespace, payload: dict[str, Any]) -> int:
    from .realtime import RealtimeConnection, connect

    outcome: list[Any] = []  # the first result, or the first error
    arrived = asyncio.Event()

    def on_result(result: Any) -> None:
        outcome.append(result)
        arrived.set()

    def on_error(error: RealtimeError) -> None:
        outcome.append(error)
        arrived.set()

    conn: RealtimeConnection | None = None
    try:
        async with asyncio.timeout(args.timeout):
            conn = await connect(
                args.app,
                on_result=on_result,
                on_error=on_error,
                base_url=args.base_url,
                key=args.key,
                path=args.path,
                open_timeout_s=args.timeout,
            )
            await conn.send(payload)
            await arrived.wait()
    except RealtimeError as exc:
        outcome[:0] = [exc]
    except TimeoutError:
        what = "no result" if conn is not None else "could not connect"
        outcome[:0] = [RealtimeTimeoutError(TIMEOUT, f"{what} within {args.timeout:g} s")]
    finally:
        # Closed outside the timeout: a close is bounded by the connection's own limits.
        if conn is not None:
            await conn.close()
    first = outcome[0]
    if isinstance(first, RealtimeError):
        return _error(first)
    print(_format_result(first, compact=args.json), flush=True)
    return 0


# -- ws -----------------------------------------------------------------------------


async def _ws(args: argparse.Namespace, body: Any) -> int:
    """Send ``body`` over HTTP over WebSockets and print the response; return the status."""
    from .http_ws import ws

    try:
        conn = ws(
            args.app,
            path=args.path,
            key=args.key,
            base_url=args.base_url,
            open_timeout_s=args.timeout,
        )
    except RealtimeError as exc:
        return _error(exc)
    waiting = "could not connect"
    try:
        try:
            async with asyncio.timeout(args.timeout):
                await conn.open()
                waiting = "no response"
                await conn.send(body)
                if not args.stream:
                    content = await conn.recv()
            if args.stream:
                await _ws_stream(conn, args.timeout)
            else:
                _write_body(content, compact=args.json)
        finally:
            # Closed outside the timeout: a close is bounded by the connection's own limits.
            await conn.close()
    except RealtimeError as exc:
        return _error(exc)
    except TimeoutError:
        return _error(RealtimeTimeoutError(TIMEOUT, f"{waiting} within {args.timeout:g} s"))
    except BrokenPipeError:
        # Whoever read stdout stopped (e.g. `| head`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


async def _ws_stream(conn: HttpWsConnection, wait_s: float) -> None:
    """Print the next response's body as it arrives (SSE: each event's data on a line).

    Waits at most ``wait_s`` seconds for the start and then for each next chunk.
    """
    import orjson

    from ._protocol.sse import SSEParser

    chunks = conn.stream()
    parser: SSEParser | None = None
    first = True
    try:
        while True:
            try:
                async with asyncio.timeout(wait_s):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                what = "no response" if first else "no further chunk"
                raise RealtimeTimeoutError(TIMEOUT, f"{what} within {wait_s:g} s") from None
            if first:
                first = False
                # The start frame has been read by now: its headers say what the body is.
                if conn.last_start is not None and _is_event_stream(conn.last_start.headers):
                    parser = SSEParser()
            if parser is None:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                continue
            for event in parser.feed(chunk):
                try:
                    line = _format_result(orjson.loads(event.data), compact=True)
                except orjson.JSONDecodeError:
                    line = event.data
                print(line, flush=True)
    finally:
        await chunks.aclose()


def _is_event_stream(headers: Mapping[str, str]) -> bool:
    """Tell whether response ``headers`` say ``Content-Type: text/event-stream``."""
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.partition(";")[0].strip().lower() == "text/event-stream"
    return False


def _write_body(content: bytes, *, compact: bool) -> None:
    """Print ``content``: JSON formatted, else UTF-8 text, else the bytes as they are."""
    import orjson

    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    else:
        print(_format_result(value, compact=compact), flush=True)
        return
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return
    if text:
        print(text, end="" if text.endswith("\n") else "\n", flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
