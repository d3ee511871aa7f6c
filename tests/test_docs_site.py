"""USR-DOCS: the documentation site builds strictly, generated pages hold what they should,
and its home and API pages render with their theme in Chromium.

The site is built once for the module with ``mkdocs build --strict`` into a tmp dir and
served from 127.0.0.1 by aiohttp; Chromium is driven by tests/browser_tools.py.
Screenshots are saved under the test's tmp dir.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

import fal_realtime
import fal_realtime.media
import fal_realtime.proxy
import fal_realtime.testing

from .browser_tools import chromium, needs_chromium

pytest.importorskip("mkdocs", reason="needs the docs extra: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parent.parent
#: A desktop viewport: the theme shows its navigation beside the page.
VIEWPORT = (1280, 900)
#: The longest ``mkdocs build`` may take.
BUILD_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build the site strictly into a tmp dir; yield the directory."""
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**env, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    yield out


@pytest.fixture
async def served(site: Path) -> AsyncIterator[str]:
    """Serve the built site on 127.0.0.1; yield its base URL."""

    async def page(request: web.Request) -> web.FileResponse:
        path = (site / request.match_info["path"]).resolve()
        if path.is_dir():
            path = path / "index.html"
        if not path.is_relative_to(site) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{path:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


def test_usr_docs_4_generated_pages_follow_their_sources(site: Path) -> None:
    """USR-DOCS-4: the API pages anchor every public name; performance shows the JSON's."""
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    missing = [n for n in fal_realtime.__all__ if f'id="fal_realtime.{n}"' not in api]
    assert not missing, f"not in the API reference: {missing}"
    assert f"<code>{fal_realtime.__version__}</code>" in api
    for module in (fal_realtime.media, fal_realtime.proxy, fal_realtime.testing):
        page_name = module.__name__.rsplit(".", 1)[1]
        html = (site / "api" / page_name / "index.html").read_text(encoding="utf-8")
        missing = [n for n in module.__all__ if f'id="{module.__name__}.{n}"' not in html]
        assert not missing, f"not in the {module.__name__} reference: {missing}"
    server = (site / "api" / "server" / "index.html").read_text(encoding="utf-8")
    assert 'id="fal_realtime.server.Gateway"' in server
    page = (site / "performance" / "index.html").read_text(encoding="utf-8")
    document = json.loads((ROOT / "docs" / "performance.json").read_text(encoding="utf-8"))
    for scenario in document["scenarios"]:
        assert scenario["title"] in page or _escaped(scenario["title"]) in page, scenario["name"]
        for target in scenario["targets"]:
            assert _escaped(target["label"]) in page, target["label"]
    assert 'src="../performance.png"' in page


def _escaped(text: str) -> str:
    """Return ``text`` as the site's HTML writes it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@needs_chromium
async def test_usr_docs_5_home_and_api_pages_render_with_the_theme(
    served: str, tmp_path: Path
) -> None:
    """USR-DOCS-5: in Chromium, the home and API pages show the theme's header, navigation
    and API blocks, and their screenshots are not blank."""
    from PIL import Image

    for name, path, selector in (
        ("home", "", "article h1"),
        ("api", "api/", ".doc-heading"),
    ):
        url = served + path
        async with chromium(url, tmp_path / f"profile-{name}") as page:
            await page.call(
                "Emulation.setDeviceMetricsOverride",
                width=VIEWPORT[0],
                height=VIEWPORT[1],
                deviceScaleFactor=1,
                mobile=False,
            )
            await page.wait_until(
                "document.readyState === 'complete' && !!document.querySelector('.md-header')",
                f"{name} page loaded",
            )
            rendered = await page.evaluate(
                f"""(() => {{
                    const header = document.querySelector('header.md-header');
                    const sheets = [...document.styleSheets].map(s => s.href || '');
                    return {{
                        header: header ? getComputedStyle(header).backgroundColor : null,
                        position: header ? getComputedStyle(header).position : null,
                        nav: document.querySelectorAll('nav.md-nav a.md-nav__link').length,
                        blocks: document.querySelectorAll({selector!r}).length,
                        material: sheets.some(h => /assets\\/stylesheets\\/main\\./.test(h)),
                        title: document.title,
                    }};
                }})()"""
            )
            assert rendered["material"], rendered  # the theme's stylesheet is applied
            assert rendered["header"] not in (None, "rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
            assert rendered["position"] == "sticky", rendered
            assert rendered["nav"] >= 10, rendered
            assert rendered["blocks"] >= (20 if name == "api" else 1), rendered
            assert "fal_realtime" in rendered["title"], rendered
            png = await page.screenshot(tmp_path / f"site-{name}.png")
        image = Image.open(io.BytesIO(png)).convert("RGB")
        assert image.size == VIEWPORT
        colours = image.getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50, f"{name}: a blank screenshot"
        header_rgb = tuple(int(x) for x in re.findall(r"\d+", rendered["header"])[:3])
        top = image.crop((0, 0, VIEWPORT[0], 40)).getcolors(maxcolors=1 << 16) or []
        assert any(rgb == header_rgb for _, rgb in top), f"{name}: no themed header drawn"
