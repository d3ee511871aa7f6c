"""``fal-realtime serve``: run the local gateway until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
from typing import Any
from urllib.parse import urlsplit

from ._common import count, factor, flag, port, wait_for_stop

EPILOG_SERVE = """examples:
  fal-realtime serve --demo                       demo apps on http://127.0.0.1:8080
  fal-realtime serve --demo --port 0 --no-auth    any free port, no keys
  fal-realtime serve --upstream me/api=http://127.0.0.1:8000
  fal-realtime serve --demo --fault fal-ai/echo=drop_after=3;drop_mode=abort
  fal-realtime serve --replay fal-ai/flux-lora-realtime=flux.jsonl --replay-speed 0
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand and its options to ``sub``."""
    serve = sub.add_parser(
        "serve",
        help="run the local gateway",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(run=run)
    serve.add_argument(
        "--host", type=host, default="127.0.0.1", help="address to bind (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=port, default=8080, help="port (0 picks a free one)")
    serve.add_argument("--demo", action="store_true", help="host the demo apps")
    serve.add_argument("--no-auth", action="store_true", help="accept every connection")
    serve.add_argument(
        "--max-connections-per-key",
        type=count,
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
    serve.add_argument(
        "--replay",
        action="append",
        default=[],
        metavar="OWNER/APP=PATH",
        help="serve a recording (record=PATH) as the app it came from (repeatable)",
    )
    serve.add_argument(
        "--replay-speed",
        type=factor,
        default=1.0,
        metavar="X",
        help="factor on the recorded delays (0: no delays; default 1)",
    )
    serve.add_argument(
        "--replay-strict",
        action="store_true",
        help="answer an input that differs from the recorded one with INVALID_INPUT",
    )


def host(text: str) -> str:
    """Return the address in ``text`` to bind, for ``type=`` (empty would mean every interface)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected an address such as 127.0.0.1, got ''")
    return text


def run(args: argparse.Namespace) -> int:
    """Serve the gateway ``args`` describe until Ctrl-C; return the exit status."""
    # Build everything that can refuse bad options before the loop starts.
    gateway, context = _build_gateway(args), _ssl_context(args)
    return asyncio.run(_serve(args, gateway, context))


def _build_gateway(args: argparse.Namespace) -> Any:
    from ..server import Gateway

    if any(not key.strip() for key in args.key):
        raise ValueError("--key is empty: pass the key to accept (or leave --key out)")
    keys = list(args.key) or ([os.environ["FAL_KEY"]] if os.environ.get("FAL_KEY") else [])
    gateway = Gateway(
        keys=keys,
        auth=not args.no_auth,
        max_connections_per_key=args.max_connections_per_key or None,
    )
    if args.demo:
        from ..server.demo import register_demo_apps

        register_demo_apps(gateway)
    for item in args.upstream:
        with flag("--upstream", item):
            app_id, sep, url = item.partition("=")
            if not sep:
                raise ValueError("expected OWNER/APP=URL")
            _check_upstream_url(url)
            gateway.http_app(app_id, upstream=url)
    for item in args.fault:
        with flag("--fault", item):
            app_id, sep, spec = item.partition("=")
            if not sep:
                raise ValueError("expected OWNER/APP=SPEC")
            gateway.set_faults(app_id, spec)
    for item in args.replay:
        with flag("--replay", item):
            app_id, sep, path = item.partition("=")
            if not sep:
                raise ValueError("expected OWNER/APP=PATH")
            gateway.replay(app_id, path, speed=args.replay_speed, strict=args.replay_strict)
    return gateway


def _check_upstream_url(url: str) -> None:
    """Refuse an upstream URL with no host or a bad port (the scheme is the gateway's check)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ValueError("the URL has no host: expected e.g. http://127.0.0.1:8000")
    try:
        bad_port = parts.port == 0
    except ValueError:  # not a number, or over 65535
        bad_port = True
    if bad_port:
        raise ValueError("the URL's port is not a number in 1..65535")


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.certfile and not args.keyfile:
        return None
    if not (args.certfile and args.keyfile):
        raise ValueError("--certfile and --keyfile go together")
    for name, path in (("--certfile", args.certfile), ("--keyfile", args.keyfile)):
        with flag(name, path), open(path, "rb"):
            pass  # readable: a missing or unreadable file is named by its flag
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except ssl.SSLError:
        raise ValueError(
            f"--certfile {args.certfile!r} / --keyfile {args.keyfile!r}: not a PEM certificate "
            "and its private key"
        ) from None
    # No TLS 1.3 session tickets (nothing here resumes sessions). A ticket arrives just
    # as a client writes its upgrade request; websockets' threaded client (under
    # fal_client.SyncClient) reads the same SSL socket from another thread meanwhile,
    # and OpenSSL objects are not thread-safe: about 1 request in 600 was lost, and the
    # connection sat silent until the handshake timeout dropped it.
    context.num_tickets = 0
    return context


async def _serve(args: argparse.Namespace, gateway: Any, context: ssl.SSLContext | None) -> int:
    async with contextlib.AsyncExitStack() as stack:
        try:
            running = await stack.enter_async_context(
                gateway.serve(args.host, args.port, ssl_context=context)
            )
        except OSError as exc:  # the address is not this machine's, or the port is taken
            raise ValueError(
                f"--host {args.host!r} --port {args.port}: cannot listen there: "
                f"{exc.strerror or exc}"
            ) from None
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
        await wait_for_stop()
    print("gateway stopped", flush=True)
    return 0
