"""``fal-realtime send``: one realtime payload, the first result printed as JSON."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..errors import TIMEOUT, RealtimeError, RealtimeTimeoutError
from ._common import check_client_options, format_result, parse_payload, report_error

EPILOG_SEND = """examples:
  fal-realtime send fal-ai/echo '{"a": 1}' --base-url ws://127.0.0.1:8080 --key KEY
  FAL_RUN_HOST=ws://127.0.0.1:8080 FAL_KEY=KEY \\
    fal-realtime send fal-ai/flux-lora-realtime '{"prompt": "a tiger eye"}' --json

Binary values in the result print as <N bytes>. Exit status: 0 with a result,
1 on an error from the app or the connection (one line on stderr), 2 on bad arguments.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``send`` subcommand and its options to ``sub``."""
    send = sub.add_parser(
        "send",
        help="send one realtime payload and print the first result",
        description="Connect to a realtime app, send one JSON payload, print the first result.",
        epilog=EPILOG_SEND,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.set_defaults(run=run)
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


def run(args: argparse.Namespace) -> int:
    """Send the payload ``args`` name and print the first result; return the exit status."""
    payload = parse_payload(args.payload)
    check_client_options(args, "realtime")
    return asyncio.run(_send(args, payload))


async def _send(args: argparse.Namespace, payload: dict[str, Any]) -> int:
    from ..realtime import RealtimeConnection, connect

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
        return report_error(first)
    print(format_result(first, compact=args.json), flush=True)
    return 0
