"""The demo apps a gateway hosts with ``serve --demo`` (and always under ``fal-realtime demo``).

=============================  ==========================  ==================================
app                            protocol                    what it does
=============================  ==========================  ==================================
``fal-ai/echo``                realtime and HTTP over WS   answers ``{"echo": input}``
``fal-ai/any-llm``             HTTP over WS                ``POST /``: a deterministic offline
                                                           text model (:mod:`.llm`) that
                                                           honours "in N words"
``fal-ai/any-llm/stream``      HTTP over WS                ``POST /stream``: the same answer
                                                           as Server-Sent Events, word by word
``fal-ai/flux-lora-realtime``  realtime and HTTP over WS   a small PNG drawn from the prompt
                                                           (:mod:`.png`), as a data URL
``fal-ai/any-llm``             realtime, server streaming  the same answer, one more word
                                                           per frame (:mod:`.demo_streams`)
``fal-ai/summarize``           realtime, client streaming  one summary of all the inputs
``fal-ai/live-caption``        realtime, bidirectional     a caption per text chunk
image-to-image and video apps  realtime                    JPEG bytes in and out, as fal's
                                                           camera demos use them (:mod:`.media`)
=============================  ==========================  ==================================

Every app is built by a factory or handler here, so it can be tested without a gateway;
:func:`register_demo_apps` wires them onto one.

    gateway = Gateway()
    register_demo_apps(gateway, stream_delay_s=0.05)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

import orjson
from aiohttp import web

from .demo_streams import SUMMARIZE_TIMEOUT_S, any_llm_realtime, live_caption, summarize
from .gateway import Gateway
from .llm import answer, stream_outputs
from .media import register_media_apps
from .png import render_prompt_png, resolve_image_size

__all__ = [
    "any_llm_app",
    "echo_http_handler",
    "echo_realtime",
    "flux_http_handler",
    "flux_image",
    "flux_realtime",
    "register_demo_apps",
]

_JSON = "application/json"


def register_demo_apps(gateway: Gateway, *, stream_delay_s: float = 0.0) -> None:
    """Register the demo apps: echo, any-llm, flux-lora-realtime, the streams, the media apps.

    Args:
        gateway: the gateway to host them.
        stream_delay_s: pause between the Server-Sent Events of ``any-llm/stream``
            and between the frames of its realtime stream (0 sends them back to back).
    """
    gateway.realtime("fal-ai/echo")(echo_realtime)
    gateway.http_app("fal-ai/echo", upstream=echo_http_handler)
    gateway.http_app("fal-ai/any-llm", upstream=any_llm_app(stream_delay_s=stream_delay_s))
    gateway.realtime("fal-ai/flux-lora-realtime")(flux_realtime)
    gateway.http_app("fal-ai/flux-lora-realtime", upstream=flux_http_handler)
    gateway.realtime("fal-ai/any-llm")(any_llm_realtime(delay_s=stream_delay_s))
    gateway.realtime("fal-ai/summarize", session_timeout=SUMMARIZE_TIMEOUT_S)(summarize)
    gateway.realtime("fal-ai/live-caption")(live_caption)
    register_media_apps(gateway)


# -- fal-ai/echo ----------------------------------------------------------------------


async def echo_realtime(input: Any) -> dict[str, Any]:
    """Return ``{"echo": input}`` for any decoded value."""
    return {"echo": input}


async def echo_http_handler(request: web.Request) -> web.Response:
    """Answer ``{"echo": payload}`` for a JSON body on any path; 400 when it is not JSON."""
    payload, error = await _read_json(request)
    if error is not None:
        return error
    return _json_response({"echo": payload})


# -- fal-ai/any-llm ---------------------------------------------------------------------


def any_llm_app(*, stream_delay_s: float = 0.0) -> web.Application:
    """Build the ``any-llm`` app: ``POST /`` answers JSON, ``POST /stream`` answers SSE.

    Both take ``{"prompt": str, "model": str | None}``. ``/stream`` sends one
    ``event: event`` per growing prefix of the answer with ``"partial": true``,
    then the full answer with ``"partial": false``, pausing ``stream_delay_s``
    between events.
    """
    if stream_delay_s < 0:
        raise ValueError(f"stream_delay_s must be >= 0, got {stream_delay_s}")

    async def complete(request: web.Request) -> web.StreamResponse:
        """Answer the whole output at once."""
        output, error = await _llm_output(request)
        if error is not None:
            return error
        return _json_response({"output": output, "partial": False, "error": None})

    async def stream(request: web.Request) -> web.StreamResponse:
        """Stream the output as Server-Sent Events, one write per event."""
        output, error = await _llm_output(request)
        if error is not None:
            return error
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        events = [_sse_event(prefix, partial=True) for prefix in stream_outputs(output)]
        events.append(_sse_event(output, partial=False))
        try:
            for i, event in enumerate(events):
                if i and stream_delay_s > 0:
                    await asyncio.sleep(stream_delay_s)
                await response.write(event)
            await response.write_eof()
        except ConnectionResetError:
            # The reader went away mid-stream; there is nobody left to answer.
            pass
        return response

    app = web.Application()
    app.router.add_post("/", complete)
    app.router.add_post("/stream", stream)
    return app


async def _llm_output(request: web.Request) -> tuple[str, web.Response | None]:
    """Return the model's answer to the request, or an error response to send instead."""
    payload, error = await _read_json(request)
    if error is not None:
        return "", error
    prompt = payload.get("prompt") if isinstance(payload, dict) else None
    if not isinstance(prompt, str):
        return "", _detail(422, "prompt must be a string")
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        return "", _detail(422, "model must be a string")
    return answer(prompt, model=model), None


def _sse_event(output: str, *, partial: bool) -> bytes:
    """Return one ``event: event`` carrying ``output`` as compact JSON."""
    data = orjson.dumps({"output": output, "partial": partial, "error": None})
    return b"event: event\ndata: " + data + b"\n\n"


# -- fal-ai/flux-lora-realtime ----------------------------------------------------------


def flux_image(input: Any) -> dict[str, Any]:
    """Return the flux result for ``input``: one PNG data URL, the seed and the timings.

    ``input`` is a map with ``prompt`` (str, required), optional ``image_size``
    (a fal size name or ``{"width": W, "height": H}``) and ``seed`` (int; derived
    from the prompt when absent). Other keys, such as ``num_inference_steps``,
    are ignored.

    Raises:
        ValueError: the prompt is missing or not a string, or another argument is invalid.
    """
    started = time.perf_counter()
    prompt = input.get("prompt") if isinstance(input, dict) else None
    if not isinstance(prompt, str):
        raise ValueError("prompt must be a string")
    seed = input.get("seed")
    if seed is None:
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    elif not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError("seed must be an integer")
    width, height = resolve_image_size(input.get("image_size"))
    png = render_prompt_png(prompt, width=width, height=height, seed=seed)
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return {
        "images": [{"url": url, "width": width, "height": height, "content_type": "image/png"}],
        "seed": seed,
        "timings": {"inference": time.perf_counter() - started},
    }


async def flux_realtime(input: Any) -> dict[str, Any]:
    """Answer one realtime input with :func:`flux_image` (errors become INTERNAL_ERROR)."""
    return flux_image(input)


async def flux_http_handler(request: web.Request) -> web.Response:
    """Answer :func:`flux_image` of the JSON body on any path; 400 or 422 on bad input."""
    payload, error = await _read_json(request)
    if error is not None:
        return error
    try:
        result = flux_image(payload)
    except ValueError as exc:
        return _detail(422, str(exc))
    return _json_response(result)


# -- helpers ----------------------------------------------------------------------------


async def _read_json(request: web.Request) -> tuple[Any, web.Response | None]:
    """Return the request's JSON body, or a 400 response to send instead."""
    body = await request.read()
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError:
        return None, _detail(400, "body is not valid JSON")


def _detail(status: int, detail: str) -> web.Response:
    """Return a JSON ``{"detail": ...}`` error response, as FastAPI apps on fal answer."""
    return _json_response({"detail": detail}, status=status)


def _json_response(value: Any, *, status: int = 200) -> web.Response:
    """Return ``value`` as a compact JSON response."""
    return web.Response(body=orjson.dumps(value), status=status, content_type=_JSON)
