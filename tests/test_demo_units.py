"""Unit tests for the demo's pure parts: the PNG drawer and the offline text model."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fal_realtime.server.llm import MAX_WORDS, answer, stream_outputs
from fal_realtime.server.png import render_prompt_png, resolve_image_size

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def parse_png(data: bytes) -> tuple[int, int, bytes]:
    """Return (width, height, raw scanlines) of an 8-bit RGB PNG, checking every CRC."""
    assert data[:8] == PNG_SIGNATURE
    pos = 8
    chunks: list[tuple[bytes, bytes]] = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    return width, height, raw


# -- png ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(64, 64), (128, 72), (1, 1), (17, 300)])
def test_png_is_decodable_with_the_requested_size(width: int, height: int) -> None:
    """Write a valid RGB PNG whose IHDR and IDAT match the requested size."""
    data = render_prompt_png("a red fox", width=width, height=height, seed=1)
    got_width, got_height, raw = parse_png(data)
    assert (got_width, got_height) == (width, height)
    assert len(raw) == height * (1 + 3 * width)
    assert all(raw[y * (1 + 3 * width)] == 0 for y in range(height))


def test_png_is_deterministic() -> None:
    """Draw the same bytes for the same prompt, size and seed."""
    first = render_prompt_png("a blue whale", width=128, height=72, seed=7)
    assert render_prompt_png("a blue whale", width=128, height=72, seed=7) == first


def test_png_differs_by_prompt_and_seed() -> None:
    """Draw different pixels for different prompts and for different seeds."""
    pixels = {
        parse_png(render_prompt_png(prompt, width=64, height=64, seed=seed))[2]
        for prompt in ("a red fox", "a blue whale", "a green field")
        for seed in (1, 2)
    }
    assert len(pixels) == 6


def test_png_prompts_look_visibly_different() -> None:
    """Make two prompts differ in a large share of their pixels, not just a few."""
    _, _, a = parse_png(render_prompt_png("a red fox", width=64, height=64, seed=1))
    _, _, b = parse_png(render_prompt_png("a blue whale", width=64, height=64, seed=1))
    differing = sum(1 for x, y in zip(a, b, strict=True) if abs(x - y) > 16)
    assert differing > len(a) // 4


def test_png_rejects_an_empty_size() -> None:
    """Refuse a zero width or height."""
    with pytest.raises(ValueError, match="positive"):
        render_prompt_png("x", width=0, height=10, seed=1)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("square_hd", (128, 128)),
        ("square", (64, 64)),
        ("portrait_4_3", (96, 128)),
        ("portrait_16_9", (72, 128)),
        ("landscape_4_3", (128, 96)),
        ("landscape_16_9", (128, 72)),
        (None, (64, 64)),
    ],
)
def test_named_sizes_resolve_to_an_eighth(name: str | None, size: tuple[int, int]) -> None:
    """Resolve fal's size names (and None) to an eighth of their full size."""
    assert resolve_image_size(name) == size


@pytest.mark.parametrize(
    ("custom", "size"),
    [
        ({"width": 100, "height": 50}, (100, 50)),
        ({"width": 1024, "height": 512}, (512, 256)),
        ({"width": 8, "height": 4}, (32, 16)),
        ({"width": 4096, "height": 16}, (512, 16)),
    ],
)
def test_custom_sizes_are_clamped(custom: dict[str, int], size: tuple[int, int]) -> None:
    """Fit a custom size into 16..512 per side, keeping its aspect ratio when possible."""
    assert resolve_image_size(custom) == size


def test_unknown_size_name_lists_the_accepted_names() -> None:
    """Reject an unknown size name with a message naming the accepted ones."""
    with pytest.raises(ValueError, match="landscape_16_9") as caught:
        resolve_image_size("huge")
    assert "square_hd" in str(caught.value)


@pytest.mark.parametrize(
    "bad", [{"width": 0, "height": 10}, {"width": "10", "height": 10}, {"width": True}, 12]
)
def test_invalid_sizes_are_rejected(bad: object) -> None:
    """Reject sizes that are neither a name nor positive integer sides."""
    with pytest.raises(ValueError):
        resolve_image_size(bad)


# -- llm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50, 333, MAX_WORDS])
def test_answer_has_exactly_n_words(n: int) -> None:
    """Answer "in N words" prompts with exactly N words."""
    text = answer(f"What is the meaning of life? Respond in {n} words.")
    assert len(text.split()) == n
    assert text[0].isupper() and text.endswith(".")


def test_answer_matches_in_n_words_in_any_case() -> None:
    """Find "in N words" case-insensitively, with "word" singular too."""
    assert len(answer("ANSWER IN 4 WORDS").split()) == 4
    assert len(answer("say it in 1 word").split()) == 1


def test_answer_caps_the_word_count() -> None:
    """Cap N at 2000 words and raise 0 to one word."""
    assert len(answer("Respond in 99999 words").split()) == MAX_WORDS
    assert len(answer("Respond in 0 words").split()) == 1


def test_answer_is_deterministic_per_prompt_and_model() -> None:
    """Give the same answer for the same prompt and model, another for another model."""
    prompt = "What is the meaning of life? Respond in 30 words"
    assert answer(prompt) == answer(prompt)
    assert answer(prompt, model="a") == answer(prompt, model="a")
    assert answer(prompt, model="a") != answer(prompt, model="b")
    assert answer("hello") != answer("goodbye")


@pytest.mark.parametrize("prompt", ["hello", "What is the meaning of life?", "", "in many words"])
def test_answer_without_a_word_count_is_a_short_sentence(prompt: str) -> None:
    """Answer other prompts with one sentence of 8 to 16 words."""
    text = answer(prompt)
    assert 8 <= len(text.split()) <= 16
    assert text[0].isupper() and text.endswith(".") and text.count(".") == 1


def test_stream_outputs_grow_word_by_word() -> None:
    """Yield growing prefixes, one word more each, ending with the whole text."""
    text = answer("Respond in 12 words")
    outputs = stream_outputs(text)
    assert len(outputs) == 12
    assert outputs[-1] == text
    for i, prefix in enumerate(outputs, start=1):
        assert text.startswith(prefix)
        assert len(prefix.split()) == i
    assert stream_outputs("The meaning of life")[:2] == ["The", "The meaning"]


def test_stream_outputs_edge_cases() -> None:
    """End on the text itself for empty text, one word and trailing spaces."""
    assert stream_outputs("") == [""]
    assert stream_outputs("Word.") == ["Word."]
    assert stream_outputs("a  b ") == ["a", "a  b", "a  b "]


@given(st.integers(min_value=1, max_value=300))
def test_answer_word_count_property(n: int) -> None:
    """Answer "Respond in N words" with N words for any N in 1..300."""
    text = answer(f"Respond in {n} words")
    assert len(text.split()) == n
    assert stream_outputs(text)[-1] == text
