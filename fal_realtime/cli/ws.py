"""``fal-realtime ws``: one HTTP-over-WebSocket request, the response body printed."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import TIMEOUT, RealtimeError, RealtimeTimeoutError
from ._common import check_client_options, format_result, parse_json, report_error

if TYPE_CHECKING:
    from ..http_ws import HttpWsConnection

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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ws`` subcommand and its options to ``sub``."""
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
    ws.set_defaults(run=run)
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


def run(args: argparse.Namespace) -> int:
    """Send the body ``args`` name and print the response; return the exit status."""
    body = parse_json(args.payload)
    check_client_options(args, "http_ws")
    return asyncio.run(_ws(args, body))


async def _ws(args: argparse.Namespace, body: Any) -> int:
    """Send ``body`` over HTTP over WebSockets and print the response; return the status."""
    from ..http_ws import ws

    try:
        conn = ws(
            args.app,
            path=args.path,
            key=args.key,
            base_url=args.base_url,
            open_timeout_s=args.timeout,
        )
    except RealtimeError as exc:
        return report_error(exc)
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
        return report_error(exc)
    except TimeoutError:
        return report_error(RealtimeTimeoutError(TIMEOUT, f"{waiting} within {args.timeout:g} s"))
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

    from .._protocol.sse import SSEParser

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
                    line = format_result(orjson.loads(event.data), compact=True)
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
        print(format_result(value, compact=compact), flush=True)
        return
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return
    if text:
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
