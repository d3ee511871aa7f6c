"""Demo apps: the CPU the gateway's demo apps spend drawing one image.

``fal-ai/flux-lora-realtime`` answers every input with a PNG drawn from the prompt, so
the gateway's realtime numbers elsewhere in the suite include that drawing. Timed here
in-process, per image, over a batch of seeds (each round draws ``BATCH`` images):

- ``render_prompt_png 128x72``: the PNG encoder alone, at the size the tests use;
- ``flux_image landscape_16_9``: the demo app's whole answer at its default size.

Targets: the PNG in under 5 ms, the whole answer in under 10 ms (medians over the
rounds). These were wall-clock assertions in the unit tests, where a loaded machine
made them fail for the wrong reason; here they are findings, like every other target.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fal_realtime.server.demo import flux_image
from fal_realtime.server.png import render_prompt_png

from ._env import Env
from ._harness import Sample, ScenarioResult, interleave

NAME = "demoapps"
TITLE = "demo apps: CPU per image drawn (PNG encoder, flux-lora-realtime's answer)"
#: Images drawn per round (the per-image time is the round's mean).
BATCH = 20
PNG = "render_prompt_png 128x72"
FLUX = "flux_image landscape_16_9"


def _timed(draw: Callable[[int], object]) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        started = time.perf_counter()
        for seed in range(BATCH):
            draw(seed)
        return {"ms_per_image": (time.perf_counter() - started) / BATCH * 1e3}

    return measure


async def run(env: Env) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE, {"ms_per_image": "ms"}, primary="ms_per_image")
    contenders = {
        PNG: _timed(lambda seed: render_prompt_png("a fast fox", width=128, height=72, seed=seed)),
        FLUX: _timed(
            lambda seed: flux_image(
                {"prompt": "a quick fox", "seed": seed, "image_size": "landscape_16_9"}
            )
        ),
    }
    await interleave(result, contenders, env.opts.n_rounds(5, 20), timeout_s=30)
    result.target_value("PNG 128x72 per image", PNG, "ms_per_image", "<=", 5, "ms")
    result.target_value("flux-lora-realtime answer per image", FLUX, "ms_per_image", "<=", 10, "ms")
    return result
