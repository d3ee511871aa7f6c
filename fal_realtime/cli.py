"""The ``fal-realtime`` command: run the local gateway, or a demo against it.

fal-realtime demo                       # gateway + demo apps in-process, one round trip each
fal-realtime serve --demo --port 8080   # a gateway for your own clients
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__

__all__ = ["main"]

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
        epilog="example:\n  fal-realtime demo --out-dir /tmp/images",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out-dir", default=".", help="where to save images (default .)")
    return parser


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
            return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    return 2


# -- serve --------------------------------------------------------------------------


def _build_gateway(args: argparse.Namespace) -> Any:
    from .server import Gateway

    keys = list(args.key) or ([os.environ["FAL_KEY"]] if os.environ.get("FAL_KEY") else [])
    gateway = Gateway(keys=keys, auth=not args.no_auth)
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

DEMO_PROMPT = (
    "Extreme close-up of a single tiger eye, direct frontal view. Detailed iris and pupil. "
    "Sharp focus on eye texture and color. Natural lighting to capture authentic eye shine "
    'and depth. The word "FLUX" is painted over it in big, white brush strokes with '
    "visible texture."
)


async def _demo(args: argparse.Namespace) -> int:
    import aiohttp
    import orjson
    import ormsgpack

    from .server import Gateway
    from .server.demo import register_demo_apps

    out_dir = Path(args.out_dir)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    gateway = Gateway()
    register_demo_apps(gateway)
    headers = {"Authorization": f"Key {gateway.generated_key}"}
    async with gateway.serve(port=0) as running, aiohttp.ClientSession() as http:
        print(f"fal-realtime gateway listening on {running.url} (in-process demo)")
        async with http.post(
            f"{running.url}/tokens/",
            json={"allowed_apps": ["flux-lora-realtime"], "token_expiration": 120},
            headers=headers,
        ) as resp:
            token = await resp.json()
        url = f"{running.ws_url}/fal-ai/flux-lora-realtime/realtime"
        async with http.ws_connect(url, params={"fal_jwt_token": token}) as ws:
            request = {"prompt": DEMO_PROMPT, "image_size": "landscape_16_9", "seed": 6252023}
            await ws.send_bytes(ormsgpack.packb(request))
            msg = await ws.receive()
            result = ormsgpack.unpackb(msg.data)
        image = result["images"][0]
        png = base64.b64decode(image["url"].split(",", 1)[1])
        path = out_dir / "fal-realtime-demo.png"
        path.write_bytes(png)
        print(f"realtime  fal-ai/flux-lora-realtime -> {image['width']}x{image['height']} PNG")
        print(f"          saved {path} ({len(png)} bytes), seed {result['seed']}")
        async with http.ws_connect(f"{running.ws_url}/fal-ai/any-llm", headers=headers) as ws:
            await ws.send_str(
                orjson.dumps(
                    {"prompt": "What is the meaning of life? Respond in 12 words."}
                ).decode()
            )
            body = b""
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    body += msg.data
                    continue
                frame = orjson.loads(msg.data)
                if isinstance(frame, dict) and frame.get("type") == "end":
                    break
                if not (isinstance(frame, dict) and frame.get("type") == "start"):
                    body += msg.data.encode()
        print(f"http-ws   fal-ai/any-llm -> {orjson.loads(body)['output']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
