"""Demo apps for the three streaming realtime modes: offline and deterministic.

=================================  ================  ===========================================
app (realtime path)                mode              what it does
=================================  ================  ===========================================
``fal-ai/any-llm``                 server streaming  ``{"prompt"}``: the :mod:`.llm` answer,
                                                     one more word per frame, then the whole
``fal-ai/summarize``               client streaming  ``{"text"}`` inputs; one summary once no
                                                     input came for 5 s, or at once after an
                                                     input with ``"done": true``
``fal-ai/live-caption``            bidirectional     ``{"text"}`` chunks; a caption frame per
                                                     chunk (the line so far), ``"final": true``
                                                     when a sentence or a 12-word line ends
=================================  ================  ===========================================

    fal-realtime send fal-ai/summarize '{"text": "tigers hunt at night", "done": true}'
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from .llm import answer, stream_outputs

__all__ = [
    "CAPTION_LINE_WORDS",
    "SUMMARIZE_TIMEOUT_S",
    "any_llm_realtime",
    "live_caption",
    "summarize",
]

#: The summarize demo's session timeout: the summary comes this long after the last input.
SUMMARIZE_TIMEOUT_S = 5.0
#: A caption line ends after this many words even without a full stop.
CAPTION_LINE_WORDS = 12

_WORD = re.compile(r"[\w']+")
_SENTENCE_END = (".", "!", "?")


def _text(item: dict[str, Any], *, optional: bool = False) -> str:
    text = item.get("text", "" if optional else None)
    if not isinstance(text, str):
        raise ValueError('each input needs "text": a string')
    return text


def any_llm_realtime(*, delay_s: float = 0.0) -> Any:
    """Return the server-streaming ``fal-ai/any-llm`` handler (``delay_s`` between frames)."""

    async def any_llm(input: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream the answer to ``{"prompt", "model"?}``: growing prefixes, then the whole."""
        prompt, model = input.get("prompt"), input.get("model")
        if not isinstance(prompt, str):
            raise ValueError("prompt must be a string")
        if model is not None and not isinstance(model, str):
            raise ValueError("model must be a string")
        output = answer(prompt, model=model)
        for i, prefix in enumerate(stream_outputs(output)):
            if i and delay_s > 0:
                await asyncio.sleep(delay_s)
            yield {"output": prefix, "partial": prefix != output, "error": None}

    return any_llm


async def summarize(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Summarise every ``{"text"}`` input of the session; ``"done": true`` ends it at once."""
    texts: list[str] = []
    async for item in inputs:
        texts.append(_text(item, optional=bool(item.get("done"))))
        if item.get("done"):
            break
    words = [w.lower() for text in texts for w in _WORD.findall(text)]
    top = sorted(Counter(words).items(), key=lambda pair: (-pair[1], pair[0]))[:5]
    about = ", ".join(word for word, _ in top) or "nothing"
    return {
        "inputs": len(texts),
        "words": len(words),
        "characters": sum(len(text) for text in texts),
        "top_words": [[word, count] for word, count in top],
        "summary": f"{len(texts)} inputs, {len(words)} words, mostly about: {about}.",
    }


async def live_caption(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Caption ``{"text"}`` chunks as they come: the current line, final at its end."""
    line: list[str] = []
    number = 0

    def caption(final: bool) -> dict[str, Any]:
        text = " ".join(line)
        return {"caption": text[:1].upper() + text[1:], "final": final, "line": number}

    async for item in inputs:
        done = bool(item.get("done"))
        for word in _text(item, optional=done).split():
            line.append(word)
            if word.endswith(_SENTENCE_END) or len(line) >= CAPTION_LINE_WORDS:
                yield caption(final=True)
                line, number = [], number + 1
        if line and not done:
            yield caption(final=False)
        if done:
            break
    if line:  # the session is ending: what was left is a line of its own
        yield caption(final=True)
