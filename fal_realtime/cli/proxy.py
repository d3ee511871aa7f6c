"""``fal-realtime proxy``: fal's server proxy and the token route, for front-end development."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
from typing import Any

from ._common import wait_for_stop

PREFIX = "/api/fal"
EPILOG_PROXY = """examples:
  fal-realtime proxy --allow-app fal-ai/flux-lora-realtime     on http://127.0.0.1:8787
  fal-realtime proxy --port 0 --allow-app fal-ai/echo --allow-app fal-ai/any-llm

The page uses /api/fal/proxy (fal.config({proxyUrl})) or /api/fal/token?app=...
(tokenProvider). Without --no-auth only pages served from this machine may use it.
The key comes from FAL_KEY (or FAL_KEY_ID + FAL_KEY_SECRET); FAL_RUN_HOST and
FAL_REST_URL send fal's traffic to a local gateway instead (development, tests).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``proxy`` subcommand and its options to ``sub``."""
    proxy = sub.add_parser(
        "proxy",
        help="serve fal's server proxy and a token route for browser apps",
        epilog=EPILOG_PROXY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    proxy.set_defaults(run=run)
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    proxy.add_argument("--port", type=int, default=8787, help="port (0 picks a free one)")
    proxy.add_argument(
        "--allow-app",
        action="append",
        default=[],
        metavar="OWNER/ALIAS",
        help="an app the browser may use (repeatable; at least one)",
    )
    proxy.add_argument(
        "--no-auth",
        action="store_true",
        help="serve any client and any page (default: this machine's pages only)",
    )


def _build(args: argparse.Namespace) -> Any:
    from ..proxy import Proxy, loopback_only

    if not args.allow_app:
        raise ValueError("pass --allow-app OWNER/ALIAS (repeatable): the apps the page may use")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    apps = []
    for app in args.allow_app:
        if app != "*" and app.count("/") < 1:
            raise ValueError(f"--allow-app {app!r}: expected OWNER/ALIAS, e.g. fal-ai/echo")
        apps.append(app)
    allowed = "*" if "*" in apps else apps
    try:
        return Proxy(
            allowed_apps=allowed,
            authorize=None if args.no_auth else loopback_only,
            allow_unauthenticated=args.no_auth,
        )
    except ValueError as exc:
        text = str(exc).replace(", pass key=...", "")
        raise ValueError(f"--allow-app: {text}" if "app id" in text else text) from None


def run(args: argparse.Namespace) -> int:
    """Serve the proxy ``args`` describe until Ctrl-C; return the exit status."""
    proxy = _build(args)  # bad options are refused before anything listens
    return asyncio.run(_serve(args, proxy))


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(args: argparse.Namespace, proxy: Any) -> int:
    from aiohttp import web

    from ..proxy import proxy_routes

    app = web.Application()
    app.router.add_routes(proxy_routes(proxy, PREFIX))
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port).start()
        port = runner.addresses[0][1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        base = f"http://{host}:{port}{PREFIX}"
        print(f"fal-realtime proxy listening on {base}", flush=True)
        print(f"proxy: {base}/proxy")
        print(f"token: {base}/token?app=OWNER/ALIAS")
        apps = "every app" if proxy.allowed.every else ", ".join(sorted(proxy.allowed.keys))
        print(f"apps: {apps}")
        print(f"fal.run requests go to {proxy.upstreams.run}")
        if args.no_auth:
            warning = "" if _loopback(args.host) else " (and the address is not a loopback one)"
            print(f"auth: off (--no-auth): anyone who reaches it spends your key{warning}")
        else:
            print("auth: requests from this machine, sent by its own pages (loopback only)")
        print("press Ctrl-C to stop", flush=True)
        await wait_for_stop()
    finally:
        await runner.cleanup()
    print("proxy stopped", flush=True)
    return 0
