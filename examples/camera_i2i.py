"""Stream camera frames at 30 fps through a realtime image-to-image app, as fal's camera demo.

Frames come from a camera when OpenCV is installed and one is there, from a video file
(``--source clip.mp4``, also with OpenCV), or else from a synthetic moving scene drawn with
Pillow. Each frame goes out as JPEG bytes (msgpack bin) with ``fal_realtime.connect``'s
default options: latest wins, so a frame that waits is replaced by a newer one and latency
stays bounded. ``--throttle-interval 0`` sends as fal's JavaScript demo does
(``throttleInterval: 0``). At the end it writes:

- ``camera_i2i_side_by_side.png``: a few inputs beside the outputs they became;
- ``camera_i2i_latency.csv`` and, with matplotlib, ``camera_i2i_latency.png``: the latency
  of every result over time.

Offline, against a gateway started in this process (the default)::

    pip install -e '.[media]'            # Pillow; '.[bench]' adds matplotlib for the plot
    python examples/camera_i2i.py --seconds 5
    python examples/camera_i2i.py --inference-ms 80      # the model slower than the camera

Against a running gateway (``fal-realtime serve --demo``) or fal itself::

    python examples/camera_i2i.py --base-url ws://127.0.0.1:8080 --key dev-...
    FAL_KEY=... python examples/camera_i2i.py --fal
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import math
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import fal_realtime

try:
    from PIL import Image, ImageDraw
except ImportError:  # pragma: no cover - said once, clearly
    print("camera_i2i needs Pillow: pip install 'fal-realtime[media]'", file=sys.stderr)
    raise SystemExit(2) from None

APP = "fal-ai/fast-turbo-diffusion/image-to-image"
PROMPT = "a watercolour painting of a city street at dusk"
SIZE = (512, 384)
WAIT_S = 30.0


# -- frames ------------------------------------------------------------------------------


def jpeg(image: Image.Image, quality: int = 80) -> bytes:
    """Encode ``image`` as JPEG bytes."""
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def synthetic_frame(t: float, size: tuple[int, int] = SIZE) -> bytes:
    """Draw a moving scene at time ``t`` (s): a sky, a bouncing ball, a sliding bar."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    x = int((math.sin(t * 1.7) + 1) / 2 * (width - 80)) + 40
    y = int(abs(math.sin(t * 3.1)) * (height - 120)) + 40
    draw.ellipse((x - 40, y - 40, x + 40, y + 40), fill=(230, 60, 40))
    bar = int(t * 120) % (width + 100) - 100
    draw.rectangle((bar, height - 60, bar + 100, height - 20), fill=(40, 160, 90))
    draw.text((10, 10), f"t={t:5.2f}s", fill=(255, 255, 255))
    return jpeg(image)


def opencv_frames(source: int | str) -> Callable[[], bytes | None] | None:
    """Return a reader of JPEG frames from a camera or a video file, or None without one."""
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        return None
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        return None

    def read() -> bytes | None:
        ok, frame = capture.read()
        if not ok:  # a file ends: start it again
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = capture.read()
            if not ok:
                return None
        rgb = cv2.cvtColor(cv2.resize(frame, SIZE), cv2.COLOR_BGR2RGB)
        return jpeg(Image.fromarray(rgb))

    read.release = capture.release  # type: ignore[attr-defined]
    return read


async def frames(source: str, fps: float, seconds: float) -> AsyncIterator[bytes]:
    """Yield JPEG frames at ``fps`` for ``seconds`` from ``source`` (auto, synthetic, a file)."""
    reader = None
    if source != "synthetic":
        reader = opencv_frames(0 if source == "auto" else source)
        if reader is None and source != "auto":
            raise ValueError(f"cannot read {source!r} (a video file needs OpenCV: opencv-python)")
    print(f"frames from {'a camera or file (OpenCV)' if reader else 'a synthetic scene'}")
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for i in range(int(fps * seconds)):
            if (wait := start + i / fps - loop.time()) > 0:
                await asyncio.sleep(wait)
            frame = await asyncio.to_thread(reader) if reader else synthetic_frame(i / fps)
            if frame is None:
                return
            yield frame
    finally:
        if reader is not None:
            reader.release()  # type: ignore[attr-defined]


# -- the stream --------------------------------------------------------------------------


class Latencies:
    """Pair each result with the frame it answers (by request_id); time the round trip."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.sent: dict[str, tuple[float, bytes]] = {}
        self.rows: list[tuple[float, float, str]] = []  # (time since start, latency, id)
        self.pairs: list[tuple[bytes, bytes]] = []  # (input frame, output image)
        self.errors: list[fal_realtime.RealtimeError] = []
        self.changed = asyncio.Event()

    def on_result(self, result: dict[str, Any]) -> None:
        now = time.perf_counter()
        request_id = str(result.get("request_id"))
        sent_at, frame = self.sent.get(request_id, (now, b""))
        self.rows.append((now - self.started, now - sent_at, request_id))
        images = result.get("images") or []
        if frame and images:
            self.pairs.append((frame, images[0]["content"]))
        self.changed.set()

    def on_error(self, error: fal_realtime.RealtimeError) -> None:
        self.errors.append(error)
        self.changed.set()

    async def wait_for(self, request_id: str) -> None:
        """Wait (bounded) for the result of ``request_id``, or an error."""
        async with asyncio.timeout(WAIT_S):
            while not self.errors and not any(r[2] == request_id for r in self.rows):
                self.changed.clear()
                await self.changed.wait()


async def stream(args: argparse.Namespace, base_url: str | None, key: str | None) -> Latencies:
    """Send the frames; return what came back."""
    seen = Latencies()
    options: dict[str, Any] = {}
    if args.throttle_interval is not None:
        options["throttle_interval"] = args.throttle_interval
    connection = await fal_realtime.connect(
        args.app,
        on_result=seen.on_result,
        on_error=seen.on_error,
        base_url=base_url,
        key=key,
        **options,
    )
    async with connection:
        last = ""
        async for frame in frames(args.source, args.fps, args.seconds):
            last = str(len(seen.sent))
            seen.sent[last] = (time.perf_counter(), frame)
            payload = {
                "prompt": args.prompt,
                "image_bytes": frame,
                "strength": 0.6,
                "seed": 42,
                "num_inference_steps": 2,
                "request_id": last,
            }
            await connection.send(payload)
            if seen.errors:
                break
        if last and not seen.errors:
            await seen.wait_for(last)  # latest wins: the newest frame always goes out
        stats = connection.stats
        print(
            f"frames {len(seen.sent)}: sent {stats.sent}, coalesced {stats.coalesced}, "
            f"results {len(seen.rows)}"
        )
    if seen.errors:
        raise seen.errors[0]
    return seen


# -- the outputs -------------------------------------------------------------------------


def side_by_side(pairs: list[tuple[bytes, bytes]], path: Path, rows: int = 4) -> None:
    """Write ``rows`` (input | output) pairs, picked evenly over the run, as one PNG."""
    picked = [pairs[i * (len(pairs) - 1) // max(1, rows - 1)] for i in range(min(rows, len(pairs)))]
    width, height = SIZE
    sheet = Image.new("RGB", (2 * width, height * len(picked)), (0, 0, 0))
    for row, (frame, output) in enumerate(picked):
        for column, data in enumerate((frame, output)):
            tile = Image.open(io.BytesIO(data)).convert("RGB").resize(SIZE)
            sheet.paste(tile, (column * width, row * height))
    sheet.save(path, format="PNG")


def latency_outputs(rows: list[tuple[float, float, str]], out_dir: Path) -> list[Path]:
    """Write the latencies as CSV, and as a plot when matplotlib is installed."""
    written = [out_dir / "camera_i2i_latency.csv"]
    with written[0].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time_s", "latency_ms", "request_id"])
        writer.writerows((f"{t:.4f}", f"{lat * 1000:.2f}", rid) for t, lat, rid in rows)
    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(8, 3.5))
        axes.plot([r[0] for r in rows], [r[1] * 1000 for r in rows], marker=".", linewidth=1)
        axes.set_xlabel("time (s)")
        axes.set_ylabel("latency (ms)")
        axes.set_title("camera frame -> image-to-image result")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        written.append(out_dir / "camera_i2i_latency.png")
        figure.savefig(written[-1], dpi=100)
        plt.close(figure)
    return written


# -- main --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def where(args: argparse.Namespace) -> AsyncIterator[tuple[str | None, str | None]]:
    """Yield (base_url, key): given, fal's (from the environment), or an in-process gateway."""
    if args.base_url or args.fal:
        yield args.base_url, args.key
        return
    from fal_realtime.server import Gateway
    from fal_realtime.server.demo import register_demo_apps

    gateway = Gateway()
    register_demo_apps(gateway)
    if args.inference_ms:
        gateway.set_faults(args.app, f"inference_ms={args.inference_ms}")
    async with gateway.serve(port=0) as running:
        print(f"gateway listening on {running.url} (in-process)")
        yield running.ws_url, gateway.generated_key


async def main(argv: list[str] | None = None) -> int:
    """Stream, then write the side-by-side picture and the latency plot; return the status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default=APP, help=f"the image-to-image app (default {APP})")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--source", default="auto", help="auto, synthetic, or a video file")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--throttle-interval",
        type=float,
        default=None,
        help="seconds between sends (default: the client's; 0 sends as fal's camera demo)",
    )
    parser.add_argument("--base-url", help="a running gateway, e.g. ws://127.0.0.1:8080")
    parser.add_argument("--key", help="the key for --base-url (default FAL_KEY)")
    parser.add_argument("--fal", action="store_true", help="use fal itself (FAL_KEY)")
    parser.add_argument(
        "--inference-ms", type=float, default=0, help="in-process gateway: a slower model"
    )
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        async with where(args) as (base_url, key):
            seen = await stream(args, base_url, key)
    except (fal_realtime.RealtimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"error: no result within {WAIT_S:.0f} s", file=sys.stderr)
        return 1
    if not seen.pairs:
        print("error: no result came back", file=sys.stderr)
        return 1
    latencies = sorted(r[1] * 1000 for r in seen.rows)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"latency p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms")
    picture = args.out_dir / "camera_i2i_side_by_side.png"
    await asyncio.to_thread(side_by_side, seen.pairs, picture)
    written = [picture, *await asyncio.to_thread(latency_outputs, seen.rows, args.out_dir)]
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
