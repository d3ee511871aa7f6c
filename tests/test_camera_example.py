"""USR-CAMERA: examples/camera_i2i.py and the demo's camera part, run as a user runs them."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

from PIL import Image

from fal_realtime.server import RunningGateway

from .child_tools import run
from .conftest import KEY

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "camera_i2i.py"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def check_outputs(out_dir: Path) -> list[list[str]]:
    """Check the picture (and plot) are valid PNGs; return the latency CSV's rows."""
    with Image.open(out_dir / "camera_i2i_side_by_side.png") as picture:
        picture.verify()
        assert picture.format == "PNG" and picture.size[0] == 2 * 512
        assert picture.size[1] % 384 == 0 and picture.size[1] >= 384
    plot = out_dir / "camera_i2i_latency.png"
    if HAS_MATPLOTLIB:
        with Image.open(plot) as image:
            image.verify()
            assert image.format == "PNG"
    with (out_dir / "camera_i2i_latency.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time_s", "latency_ms", "request_id"] and len(rows) > 1
    assert all(float(r[1]) >= 0 for r in rows[1:])
    return rows[1:]


async def test_usr_camera_1_example_streams_to_a_running_gateway(
    running: RunningGateway, tmp_path: Path
) -> None:
    """USR-CAMERA-1: camera_i2i.py --base-url: 30 fps of frames, then picture, plot and CSV."""
    code, out, err = await run(
        sys.executable,
        str(EXAMPLE),
        *("--base-url", running.ws_url, "--key", KEY),
        *("--source", "synthetic", "--seconds", "1", "--out-dir", str(tmp_path)),
    )
    assert code == 0, err
    assert "frames from a synthetic scene" in out and "frames 30: sent " in out
    rows = check_outputs(tmp_path)
    # The newest frame always goes out and is answered (latest wins, nothing left behind).
    assert rows[-1][2] == "29"
    assert KEY not in out + err


async def test_usr_camera_2_example_runs_its_own_gateway_with_throttle_zero(
    tmp_path: Path,
) -> None:
    """USR-CAMERA-2: with no --base-url it starts a gateway; --throttle-interval 0 sends all."""
    code, out, err = await run(
        sys.executable,
        str(EXAMPLE),
        *("--throttle-interval", "0", "--seconds", "0.5", "--out-dir", str(tmp_path)),
        *("--source", "synthetic"),
    )
    assert code == 0, err
    assert "(in-process)" in out and "frames 15: sent " in out
    assert check_outputs(tmp_path)[-1][2] == "14"  # the newest frame is answered


async def test_usr_camera_3_a_missing_video_file_is_one_clear_line(tmp_path: Path) -> None:
    """USR-CAMERA-3: a video source that cannot be read exits with one line, no traceback."""
    code, out, err = await run(
        sys.executable,
        str(EXAMPLE),
        *("--source", str(tmp_path / "missing.mp4"), "--seconds", "0.2"),
        *("--out-dir", str(tmp_path)),
    )
    assert code == 1
    assert "Traceback" not in err and err.strip().count("\n") == 0
    assert "missing.mp4" in err


async def test_usr_camera_4_demo_without_pillow_skips_its_camera_part(tmp_path: Path) -> None:
    """USR-CAMERA-4: fal-realtime demo without Pillow still exits 0; the camera part says why."""
    code, out, err = await run(
        sys.executable,
        "-c",
        "import sys; sys.modules['PIL'] = None\n"  # as on a machine without Pillow
        "from fal_realtime.cli import main\n"
        "sys.exit(main(['demo', '--out-dir', sys.argv[1]]))",
        str(tmp_path),
    )
    assert code == 0, err
    assert "camera    skipped: it needs Pillow (pip install 'fal-realtime[media]')" in out
    assert "fal-ai/any-llm ->" in out and (tmp_path / "fal-realtime-demo-1.png").exists()
    # One line at start-up says the media apps need it; no traceback.
    assert err.strip().splitlines() == [
        "the image and video demo apps need Pillow, which is not installed: "
        "pip install 'fal-realtime[media]'"
    ]
