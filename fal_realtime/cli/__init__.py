"""The ``fal-realtime`` command: run the local gateway, or a demo against it.

fal-realtime demo                       # gateway + demo apps in-process, this client against it
fal-realtime serve --demo --port 8080   # a gateway for your own clients
fal-realtime send fal-ai/echo '{"a": 1}' --base-url ws://127.0.0.1:8080
fal-realtime ws fal-ai/any-llm/stream '{"prompt": "hi"}' --stream   # HTTP over WebSockets

One module per subcommand (``serve``, ``demo``, ``send``, ``ws``, ``bench``), each with an
``add_parser(sub)`` that registers its options and a ``run(args)`` that returns the exit
status; ``_common`` holds what they share. The client and the gateway are imported only
when a subcommand runs. ``proxy`` serves fal's server proxy for a web page.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from .._version import __version__
from . import bench, demo, proxy, send, serve, ws
from ._common import bad_argument

__all__ = ["main"]


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
            "  fal-realtime proxy --allow-app fal-ai/echo      fal's server proxy for a web page\n"
            "\nenvironment: FAL_KEY (or FAL_KEY_ID + FAL_KEY_SECRET), FAL_RUN_HOST, "
            "FAL_WS_RUN_HOST.\nEach command's --help has more examples."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, demo, send, ws, bench, proxy):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as exc:
        return bad_argument(str(exc))
