"""A deterministic offline "text model" for the ``fal-ai/any-llm`` demo (no I/O).

It does not understand anything; it only keeps the promises tests rely on:

- a prompt containing "in N words" (any case) gets exactly N words, N capped
  at :data:`MAX_WORDS` and raised to at least 1;
- any other prompt gets one short sentence of 8 to 16 words;
- the same (prompt, model) always gets the same answer, on every Python version.

    answer("What is the meaning of life? Respond in 5 words")
    stream_outputs("The meaning of life")   # ["The", "The meaning", ...]
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

__all__ = ["MAX_WORDS", "answer", "stream_outputs"]

#: The most words an "in N words" prompt gets.
MAX_WORDS = 2000

_IN_N_WORDS = re.compile(r"\bin\s+(\d+)\s+words?\b", re.IGNORECASE)
_WORD = re.compile(r"\S+")
_MASK64 = (1 << 64) - 1

_WORDS = (
    "the a of and to in is that it for as with on by this from at be are was "
    "life meaning time world light mind water sound path question answer model "
    "river mountain story idea purpose moment journey simple quiet bright deep "
    "open small ancient gentle careful curious every many some always often "
    "learn grow find build share listen wonder remain become carry follow change "
    "people friends nature music energy silence memory future reason balance"
).split()


def answer(prompt: str, *, model: str | None = None) -> str:
    """Return the deterministic answer to ``prompt`` (and ``model``).

    With "in N words" in the prompt the answer has exactly ``min(max(N, 1),
    MAX_WORDS)`` whitespace-separated words; otherwise it is one sentence of 8
    to 16 words. Sentences start with a capital and end with a period.
    """
    rng = _SplitMix64(_seed(prompt, model))
    match = _IN_N_WORDS.search(prompt)
    if match is None:
        return _sentence(rng, 8 + rng.below(9))
    remaining = min(max(int(match.group(1)), 1), MAX_WORDS)
    sentences: list[str] = []
    while remaining:
        length = min(remaining, 6 + rng.below(10))
        # Do not leave a one-word sentence at the end when it can be avoided.
        if remaining - length == 1:
            length += 1
        sentences.append(_sentence(rng, length))
        remaining -= length
    return " ".join(sentences)


def stream_outputs(text: str) -> list[str]:
    """Return the growing prefixes of ``text``, one more word each; the last is ``text``.

    Prefixes keep ``text``'s own spacing. Text without words gives ``[text]``.
    """
    prefixes = [text[: word.end()] for word in _WORD.finditer(text)]
    if not prefixes or prefixes[-1] != text:
        # Trailing whitespace (or no word at all): the stream still ends on the full text.
        prefixes.append(text)
    return prefixes


def _seed(prompt: str, model: str | None) -> int:
    """Return a 64-bit seed from a SHA-256 of ``model`` and ``prompt``."""
    digest = hashlib.sha256(f"{model or ''}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _sentence(rng: _SplitMix64, length: int) -> str:
    """Return ``length`` words drawn from the word list, capitalised, ending with a period."""
    words = [_WORDS[i] for i in rng.indices(len(_WORDS), length)]
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


class _SplitMix64:
    """Generate numbers with SplitMix64: tiny, and the same on every platform."""

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def next(self) -> int:
        """Return the next 64-bit value."""
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Return a value in ``0..n-1`` (the modulo bias is irrelevant here)."""
        return self.next() % n

    def indices(self, n: int, count: int) -> Iterator[int]:
        """Yield ``count`` values in ``0..n-1``."""
        for _ in range(count):
            yield self.next() % n
