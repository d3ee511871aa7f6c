"""``fal-realtime demo``: the gateway and this client against it, in one process."""

from __future__ import annotations

import argparse
import asyncio
import base64
from pathlib import Path
from typing import Any

from ..errors import TIMEOUT, RealtimeError, RealtimeTimeoutError
from ._common import Outcomes, port, report_error, wait_for_stop
from .demo_camera import MEDIA_HINT, camera_available, demo_camera

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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand and its options to ``sub``."""
    demo = sub.add_parser(
        "demo",
        help="run the gateway and a client against it, in one process",
        epilog="examples:\n  fal-realtime demo --out-dir /tmp/images\n"
        "  fal-realtime demo --web            a web page: type a prompt, watch images arrive",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(run=run)
    demo.add_argument("--out-dir", default=".", help="where to save images (default .)")
    demo.add_argument(
        "--web",
        action="store_true",
        help="serve the web playground instead, until Ctrl-C",
    )
    demo.add_argument(
        "--port",
        type=port,
        default=None,
        help=f"with --web: the port to serve on (default {DEMO_WEB_PORT}; 0 picks a free one)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo (or, with ``--web``, the playground); return the exit status."""
    if args.port is not None and not args.web:
        raise ValueError("--port goes with --web")
    return asyncio.run(_demo_web(args) if args.web else _demo(args))


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
    """The demo's results: save every image as ``fal-realtime-demo-N.png``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.saved: list[Path] = []
        self.seeds: list[Any] = []
        self.outcomes = Outcomes(wait_s=DEMO_WAIT_S)

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
        self.outcomes.changed()


async def _demo(args: argparse.Namespace) -> int:
    from ..server import Gateway
    from ..server.demo import register_demo_apps

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
            print(f"http-ws   fal-ai/any-llm -> {output}", flush=True)
            if camera_available():
                print(await demo_camera(running.ws_url, key), flush=True)
            else:
                print(f"camera    skipped: it needs Pillow ({MEDIA_HINT})", flush=True)
        except RealtimeError as exc:
            return report_error(exc)
    return 0


async def _demo_web(args: argparse.Namespace) -> int:
    """Serve the web playground (gateway, demo apps and page in-process) until Ctrl-C."""
    from ..playground import CAMERA_PAGE_PATH, PAGE_PATH, serve_playground

    port = DEMO_WEB_PORT if args.port is None else args.port
    async with serve_playground(port=port) as running:
        print(f"fal-realtime gateway listening on {running.url} (in-process demo)", flush=True)
        print(f"playground: {running.url}{PAGE_PATH}", flush=True)
        print(f"camera page: {running.url}{CAMERA_PAGE_PATH}", flush=True)
        print("open it in a browser and type a prompt; press Ctrl-C to stop", flush=True)
        await wait_for_stop()
    print("playground stopped", flush=True)
    return 0


async def _demo_realtime(base_url: str, key: str, out_dir: Path) -> None:
    """Run fal's realtime example on this client, then a burst that shows the throttle."""
    from ..realtime import connect

    saver = _ImageSaver(out_dir)
    conn = await connect(
        DEMO_APP,
        on_result=saver.on_result,
        on_error=saver.outcomes.on_error,
        base_url=base_url,
        key=key,
        throttle_interval=DEMO_THROTTLE_S,
    )
    async with conn:
        await conn.send(_demo_input(DEMO_PROMPT))
        await saver.outcomes.wait_for(lambda: len(saver.seeds) >= 1, "result")

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
        await saver.outcomes.wait_for(lambda: last in saver.seeds, "result for the last send")
        print(
            f"burst: {DEMO_BURST} sends -> sent {stats.sent - sent}, "
            f"coalesced {stats.coalesced - coalesced}, results {stats.results - results} "
            f"(latest wins at {DEMO_THROTTLE_S * 1000:.0f} ms)",
            flush=True,
        )


async def _demo_http_ws(base_url: str, key: str) -> str:
    """Ask ``fal-ai/any-llm`` over HTTP over WebSockets; return its output."""
    from ..http_ws import ws

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
