"""The streaming demo apps: fal-ai/any-llm (realtime), fal-ai/summarize, fal-ai/live-caption."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from fal_realtime.playground import PAGE_PATH, serve_playground
from fal_realtime.server import RunningGateway
from fal_realtime.server.demo_streams import (
    CAPTION_LINE_WORDS,
    any_llm_realtime,
    live_caption,
    summarize,
)
from fal_realtime.server.llm import answer, stream_outputs

from .callbacks import Recorder
from .child_tools import run
from .conftest import KEY
from .gateway_tools import WAIT
from .stream_tools import streaming_connect

LIVE_CAPTION_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "live_caption.py"


async def _inputs(*items: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


async def _all(outputs: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [output async for output in outputs]


async def test_summarize_counts_words_and_names_the_most_frequent() -> None:
    """summarize: inputs, words, characters and the top words (ties alphabetical)."""
    result = await summarize(_inputs({"text": "Tigers hunt at night"}, {"text": "tigers sleep"}))
    assert result["inputs"] == 2 and result["words"] == 6 and result["characters"] == 32
    assert result["top_words"][:2] == [["tigers", 2], ["at", 1]]
    assert result["summary"] == "2 inputs, 6 words, mostly about: tigers, at, hunt, night, sleep."


async def test_summarize_stops_at_done_and_refuses_inputs_without_text() -> None:
    """An input with "done": true ends the summary at once; an input without text is refused."""
    result = await summarize(_inputs({"text": "a b"}, {"done": True}, {"text": "never read"}))
    assert (result["inputs"], result["words"]) == (2, 2)
    assert (await summarize(_inputs()))["summary"] == "0 inputs, 0 words, mostly about: nothing."
    with pytest.raises(ValueError, match="text"):
        await summarize(_inputs({"prompt": "no text"}))


async def test_live_caption_grows_a_line_and_finishes_it_at_a_sentence_end() -> None:
    """live_caption: a partial caption per chunk, a final one when the sentence ends."""
    captions = await _all(live_caption(_inputs({"text": "hello"}, {"text": "world. and"})))
    assert captions == [
        {"caption": "Hello", "final": False, "line": 0},
        {"caption": "Hello world.", "final": True, "line": 0},
        {"caption": "And", "final": False, "line": 1},
        {"caption": "And", "final": True, "line": 1},  # the inputs ended mid-line
    ]


async def test_live_caption_wraps_long_lines_and_flushes_on_done() -> None:
    """A line ends after CAPTION_LINE_WORDS words; "done": true finishes the last line."""
    words = " ".join(f"w{i}" for i in range(CAPTION_LINE_WORDS + 1))
    captions = await _all(live_caption(_inputs({"text": words}, {"done": True, "text": "end"})))
    assert [c["final"] for c in captions] == [True, False, True]
    assert len(captions[0]["caption"].split()) == CAPTION_LINE_WORDS
    assert captions[-1] == {"caption": f"W{CAPTION_LINE_WORDS} end", "final": True, "line": 1}


async def test_any_llm_realtime_streams_growing_prefixes_then_the_answer() -> None:
    """The any-llm stream: one more word per frame; only the last is not partial."""
    prompt = "What is the meaning of life? Respond in 5 words"
    outputs = await _all(any_llm_realtime()({"prompt": prompt}))
    assert [o["output"] for o in outputs] == stream_outputs(answer(prompt))
    assert [o["partial"] for o in outputs] == [True] * 4 + [False]


async def test_gw_demo_1_summarize_answers_once_done_then_the_session_ends(
    running: RunningGateway,
) -> None:
    """GW-DEMO-1: fal-ai/summarize: three inputs, the last "done": one summary, then dormant."""
    rec = Recorder()
    async with await streaming_connect(running, "fal-ai/summarize", rec) as conn:
        await conn.send({"text": "the tiger"})
        await conn.send({"text": "the forest"})
        await conn.send({"text": "at night", "done": True})
        await rec.until(lambda: rec.results and rec.dormant_times() == 1)
    assert rec.results[0]["inputs"] == 3 and rec.results[0]["top_words"][0] == ["the", 2]
    assert len(rec.results) == 1 and rec.errors == []


async def test_gw_demo_2_live_caption_answers_each_chunk_as_it_comes(
    running: RunningGateway,
) -> None:
    """GW-DEMO-2: fal-ai/live-caption: each chunk's caption arrives before the next is sent."""
    rec = Recorder()
    async with await streaming_connect(running, "fal-ai/live-caption", rec) as conn:
        for n, chunk in enumerate(["good", "evening.", "welcome"], start=1):
            await conn.send({"text": chunk})
            await rec.until(lambda n=n: len(rec.results) == n)  # type: ignore[misc]
    assert [r["caption"] for r in rec.results] == ["Good", "Good evening.", "Welcome"]
    assert [r["final"] for r in rec.results] == [False, True, False]


async def test_gw_demo_3_any_llm_streams_its_realtime_answer_word_by_word(
    running: RunningGateway,
) -> None:
    """GW-DEMO-3: fal-ai/any-llm's realtime endpoint streams the HTTP app's answer."""
    prompt = "Say hello in 4 words"
    rec = Recorder()
    async with await streaming_connect(running, "fal-ai/any-llm", rec) as conn:
        await conn.send({"prompt": prompt})
        await rec.until(lambda: rec.results and not rec.results[-1]["partial"])
    assert [r["output"] for r in rec.results] == stream_outputs(answer(prompt))


async def test_gw_demo_4_cli_send_prints_the_summary(running: RunningGateway) -> None:
    """GW-DEMO-4: fal-realtime send fal-ai/summarize '{..., "done": true}' prints the summary."""
    payload = '{"text": "tigers hunt at night", "done": true}'
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "fal_realtime", "send", "fal-ai/summarize", payload),
        *("--base-url", running.ws_url, "--key", KEY, "--json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT * 4):
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert (
        orjson.loads(out)["summary"] == "1 inputs, 4 words, mostly about: at, hunt, night, tigers."
    )


async def test_the_playground_lists_the_streaming_demo_apps(http: aiohttp.ClientSession) -> None:
    """The playground's page names the three streaming apps its gateway hosts."""
    async with serve_playground(port=0) as running:
        async with http.get(running.url + PAGE_PATH) as resp:
            page = await resp.text()
        async with http.get(running.url + "/") as resp:
            hosted = (await resp.json())["realtime"]
    for app in ("fal-ai/any-llm", "fal-ai/summarize", "fal-ai/live-caption"):
        assert f"<code>{app}</code>" in page and f"/{app}/realtime" in hosted


async def test_gw_demo_5_the_live_caption_example_prints_every_caption(
    running: RunningGateway,
) -> None:
    """GW-DEMO-5: examples/live_caption.py, pointed at the gateway, prints each caption."""
    code, out, err = await run(
        sys.executable,
        str(LIVE_CAPTION_EXAMPLE),
        env={"FAL_RUN_HOST": running.ws_url, "FAL_KEY": KEY},
    )
    assert code == 0, err
    assert out.splitlines() == [
        "partial: Good evening",
        "final:   Good evening and welcome.",
        "partial: Tonight we talk",
        "final:   Tonight we talk about tigers!",
        "final:   They hunt",
    ]
